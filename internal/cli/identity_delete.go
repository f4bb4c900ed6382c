package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// DeleteOptions are `identity delete`.
type DeleteOptions struct {
	g      *Globals
	Ref    refFlags
	Output outputFlags
}

func newDeleteCmd(g *Globals) *cobra.Command {
	o := &DeleteOptions{g: g}
	cmd := &cobra.Command{
		Use:   "delete (ID | --email EMAIL)",
		Short: "Delete one identity (and its sessions); --email refuses unless exactly one matches",
		Args:  identityArg,
		RunE:  runE(o),
	}
	o.Ref.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *DeleteOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *DeleteOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *DeleteOptions) Run(ctx context.Context) error {
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	id, err := actions.DeleteIdentity(ctx, a.APIClient, o.Ref.ref())
	if err != nil {
		return a.Explain(err)
	}
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, map[string]interface{}{"identity_id": id, "deleted": true})
	}
	fmt.Fprintf(o.g.Streams.Out, "%s deleted\n", identityName(id))
	return nil
}
