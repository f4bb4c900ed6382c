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
	if err := execute(newRootCmd(), terminationLog); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "webhook",
		Short:         "kratos-injector: injects Ory Kratos into labelled pods",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newRenderCmd(), newTLSCmd(), newUninstallCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "webhook %s (Kratos %s)\n", version.Version, version.KratosVersion)
		},
	})
	return root
}

// execute runs root. When render fails, for whatever reason (a bad flag or a missing --spec
// too, which cobra reports before render runs), its error line goes to termLog: the injected
// container's termination message is that file alone, never its log (see inject's
// terminationPolicy), and it is what the pod's status and `kubectl kratos status` show.
func execute(root *cobra.Command, termLog string) error {
	cmd, err := root.ExecuteC()
	if err != nil && cmd != nil && cmd.Name() == renderCmdName {
		writeTerminationMessage(termLog, err)
	}
	return err
}
