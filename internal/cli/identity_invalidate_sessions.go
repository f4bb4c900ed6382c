package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// InvalidateSessionsOptions are `identity invalidate-sessions`.
type InvalidateSessionsOptions struct {
	g      *Globals
	Ref    refFlags
	Output outputFlags
}

func newInvalidateSessionsCmd(g *Globals) *cobra.Command {
	o := &InvalidateSessionsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "invalidate-sessions (ID | --email EMAIL)",
		Short: "Revoke every session of an identity (sign it out everywhere)",
		Args:  identityArg,
		RunE:  runE(o),
	}
	o.Ref.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *InvalidateSessionsOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *InvalidateSessionsOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *InvalidateSessionsOptions) Run(ctx context.Context) error {
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	res, err := actions.InvalidateSessions(ctx, a.APIClient, o.Ref.ref())
	if err != nil {
		return a.Explain(err)
	}
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, res)
	}
	if res.Revoked {
		fmt.Fprintf(o.g.Streams.Out, "sessions of %s revoked\n", identityName(res.IdentityID))
	} else {
		fmt.Fprintf(o.g.Streams.Out, "%s has no active session: nothing to revoke\n", identityName(res.IdentityID))
	}
	return nil
}
