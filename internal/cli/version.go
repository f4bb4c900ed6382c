package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/version"
)

// VersionOptions are `version`.
type VersionOptions struct {
	g      *Globals
	Output outputFlags
}

func newVersionCmd(g *Globals) *cobra.Command {
	o := &VersionOptions{g: g}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and the Kratos version it targets",
		Args:  noArgs,
		RunE:  runE(o),
	}
	o.Output.add(cmd, false)
	return cmd
}

func (o *VersionOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *VersionOptions) Validate() error { return o.Output.Validate() }

func (o *VersionOptions) Run(context.Context) error {
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, map[string]string{
			"version": version.Version, "kratosVersion": version.KratosVersion,
		})
	}
	_, err := fmt.Fprintf(o.g.Streams.Out, "kubectl-kratos %s (Kratos %s)\n", version.Version, version.KratosVersion)
	return err
}
