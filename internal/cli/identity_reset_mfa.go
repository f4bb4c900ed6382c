package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// ResetMFAOptions are `identity reset-mfa`.
type ResetMFAOptions struct {
	g      *Globals
	Ref    refFlags
	Type   string
	DryRun dryRunFlags
	Output outputFlags
}

func newResetMFACmd(g *Globals) *cobra.Command {
	o := &ResetMFAOptions{g: g}
	cmd := &cobra.Command{
		Use:   "reset-mfa (ID | --email EMAIL) --type " + strings.Join(actions.MFATypes, "|"),
		Short: "Remove an identity's second factor so that its owner enrols again",
		Long: `Remove an identity's second-factor credential: totp (authenticator app), lookup_secret
(recovery codes) or webauthn (security keys used as a second factor; passwordless keys stay).`,
		Args: identityArg,
		RunE: runE(o),
	}
	o.Ref.add(cmd)
	completeRef(g, cmd, 1)
	cmd.Flags().StringVar(&o.Type, "type", "", "second factor to remove: "+strings.Join(actions.MFATypes, ", ")+" (required)")
	_ = cmd.RegisterFlagCompletionFunc("type", cobra.FixedCompletions(actions.MFATypes, cobra.ShellCompDirectiveNoFileComp))
	o.DryRun.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *ResetMFAOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *ResetMFAOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	if o.Type == "" {
		return errors.New("--type is required: " + strings.Join(actions.MFATypes, ", "))
	}
	if err := actions.ValidateMFAType(o.Type); err != nil {
		return fmt.Errorf("--type: %w", err)
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *ResetMFAOptions) Run(ctx context.Context) error {
	if o.DryRun.client() {
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, &actions.Plan{Action: "reset-mfa", Change: fmt.Sprintf("remove the %s credentials", o.Type)}, givenName(o.Ref.ref()))
	}
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if o.DryRun.server() {
		p, err := actions.PlanResetMFA(ctx, a.APIClient, o.Ref.ref(), o.Type)
		if err != nil {
			return a.Explain(err)
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, p, "")
	}
	res, err := actions.ResetMFA(ctx, a.APIClient, o.Ref.ref(), o.Type)
	if err != nil {
		return a.Explain(err)
	}
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, res)
	}
	if res.Removed {
		fmt.Fprintf(o.g.Streams.Out, "%s credentials of %s removed\n", res.Type, identityName(res.IdentityID))
	} else {
		fmt.Fprintf(o.g.Streams.Out, "%s has no %s credentials: nothing to reset\n", identityName(res.IdentityID), res.Type)
	}
	return nil
}
