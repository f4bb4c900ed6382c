package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

func newOIDCCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oidc",
		Short: "List and unlink the external (OIDC) accounts of an identity",
		Args:  noArgs,
		RunE:  helpOrUnknown,
	}
	cmd.AddCommand(newOIDCListCmd(g), newOIDCUnlinkCmd(g))
	return cmd
}

// OIDCListOptions are `identity oidc list`.
type OIDCListOptions struct {
	g      *Globals
	Ref    refFlags
	Output outputFlags
}

func newOIDCListCmd(g *Globals) *cobra.Command {
	o := &OIDCListOptions{g: g}
	cmd := &cobra.Command{
		Use:     "list (ID | --email EMAIL)",
		Aliases: []string{"ls"},
		Short:   "List the external accounts linked to an identity",
		Args:    identityArg,
		RunE:    runE(o),
	}
	o.Ref.add(cmd)
	completeRef(g, cmd, 1)
	o.Output.addObjects(cmd, false)
	return cmd
}

func (o *OIDCListOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *OIDCListOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *OIDCListOptions) Run(ctx context.Context) error {
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	res, err := actions.ListOIDC(ctx, a.APIClient, o.Ref.ref())
	if err != nil {
		return a.Explain(err)
	}
	if !o.Output.table() {
		l, err := oidcList(res)
		if err != nil {
			return err
		}
		return o.Output.printObject(o.g.Streams.Out, l, nil)
	}
	if len(res.Accounts) == 0 {
		fmt.Fprintf(o.g.Streams.ErrOut, "No OIDC account linked to %s.\n", identityName(res.IdentityID))
		return nil
	}
	rows := make([][]string, 0, len(res.Accounts))
	for _, acc := range res.Accounts {
		rows = append(rows, []string{acc.Identifier, acc.Provider, acc.Subject})
	}
	return o.Output.printTable(o.g.Streams.Out, []string{"IDENTIFIER", "PROVIDER", "SUBJECT"}, rows)
}

// OIDCUnlinkOptions are `identity oidc unlink`.
type OIDCUnlinkOptions struct {
	g            *Globals
	Ref          refFlags
	CredentialID string
	DryRun       dryRunFlags
	Output       outputFlags
}

func newOIDCUnlinkCmd(g *Globals) *cobra.Command {
	o := &OIDCUnlinkOptions{g: g}
	cmd := &cobra.Command{
		Use:     "unlink (ID | --email EMAIL) --credential-id PROVIDER:SUBJECT",
		Short:   "Unlink one external account from an identity",
		Example: `  kubectl kratos identity oidc unlink --email ada@example.com --credential-id github:12345`,
		Args:    identityArg,
		RunE:    runE(o),
	}
	o.Ref.add(cmd)
	completeRef(g, cmd, 1)
	cmd.Flags().StringVar(&o.CredentialID, "credential-id", "", "the linked account's identifier, PROVIDER:SUBJECT, as `oidc list` shows it (required)")
	_ = cmd.RegisterFlagCompletionFunc("credential-id", func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		o.Ref.complete(args)
		return g.completeOIDC(c, o.Ref.ref(), toComplete)
	})
	o.DryRun.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *OIDCUnlinkOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *OIDCUnlinkOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	if o.CredentialID == "" {
		return errors.New("--credential-id is required (see `kubectl kratos identity oidc list`)")
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *OIDCUnlinkOptions) Run(ctx context.Context) error {
	if o.DryRun.client() {
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, &actions.Plan{Action: "oidc-unlink", Change: "unlink the OIDC account " + o.CredentialID}, givenName(o.Ref.ref()))
	}
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if o.DryRun.server() {
		p, err := actions.PlanUnlinkOIDC(ctx, a.APIClient, o.Ref.ref(), o.CredentialID)
		if err != nil {
			return a.Explain(err)
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, p, "")
	}
	res, err := actions.UnlinkOIDC(ctx, a.APIClient, o.Ref.ref(), o.CredentialID)
	if err != nil {
		return a.Explain(err)
	}
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, res)
	}
	fmt.Fprintf(o.g.Streams.Out, "OIDC account %s unlinked from %s\n", res.Identifier, identityName(res.IdentityID))
	return nil
}
