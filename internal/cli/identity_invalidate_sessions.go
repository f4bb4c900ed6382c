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
	DryRun dryRunFlags
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
	completeRef(g, cmd, 1)
	o.DryRun.add(cmd)
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
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *InvalidateSessionsOptions) Run(ctx context.Context) error {
	if o.DryRun.client() {
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, &actions.Plan{Action: "invalidate-sessions", Change: "revoke and delete every session"}, givenName(o.Ref.ref()))
	}
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if o.DryRun.server() {
		p, err := actions.PlanInvalidateSessions(ctx, a.APIClient, o.Ref.ref())
		if err != nil {
			return a.Explain(err)
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, p, "")
	}
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
