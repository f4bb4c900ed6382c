// Command webhook is the kratos-injector binary: `webhook serve` runs the mutating admission
// server, `webhook render` is the init container that renders kratos.yaml inside the pod.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/version"
)

func main() {
	root := &cobra.Command{
		Use:           "webhook",
		Short:         "kratos-injector: injects Ory Kratos into labelled pods",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newRenderCmd(), newTLSCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "webhook %s (Kratos %s)\n", version.Version, version.KratosVersion)
		},
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
