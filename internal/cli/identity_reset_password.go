package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// ResetPasswordOptions are `identity reset-password`.
type ResetPasswordOptions struct {
	g         *Globals
	Ref       refFlags
	ExpiresIn time.Duration
	Password  passwordFlags
	DryRun    dryRunFlags
	Output    outputFlags
}

func newResetPasswordCmd(g *Globals) *cobra.Command {
	o := &ResetPasswordOptions{g: g}
	cmd := &cobra.Command{
		Use:   "reset-password (ID | --email EMAIL) [--password-stdin | --password-secret NAME[/KEY]]",
		Short: "Set an identity's password, or issue a recovery link and code",
		Long: `With a password (from stdin or a Secret, never the command line), set it as the identity's
password. Without one, issue a recovery code with which the identity's owner chooses a new
password: with a login UI (the kratos-injector.io/ui-url annotation of the instance's pod), a
link to its recovery page for the code's flow; without one, the flow's ID and how to submit the
code to Kratos's public API.`,
		Example: `  kubectl kratos identity reset-password --email ada@example.com
  kubectl kratos identity reset-password 9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51 --password-secret ada-password/new`,
		Args: identityArg,
		RunE: runE(o),
	}
	o.Ref.add(cmd)
	completeRef(g, cmd, 1)
	cmd.Flags().DurationVar(&o.ExpiresIn, "expires-in", time.Hour, "lifetime of the recovery code issued when no password is given")
	o.Password.add(cmd)
	o.DryRun.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *ResetPasswordOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *ResetPasswordOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	if err := validateExpiresIn(o.ExpiresIn); err != nil {
		return err
	}
	if err := o.Password.Validate(); err != nil {
		return err
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *ResetPasswordOptions) Run(ctx context.Context) error {
	withPassword := o.Password.FromStdin || o.Password.Secret != ""
	if o.DryRun.client() {
		// The password is not read: a client dry run contacts nothing, not even for a Secret.
		change := fmt.Sprintf("issue a recovery link and code valid for %s", o.ExpiresIn)
		if withPassword {
			change = "set the password"
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, &actions.Plan{Action: "reset-password", Change: change}, givenName(o.Ref.ref()))
	}
	// A server dry run reads the password too: that the Secret and its key exist is checked.
	pw, err := o.Password.read(ctx, o.g)
	if err != nil {
		return err
	}
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if o.DryRun.server() {
		p, err := actions.PlanResetPassword(ctx, a.APIClient, o.Ref.ref(), pw != "", o.ExpiresIn.String())
		if err != nil {
			return a.Explain(err)
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, p, "")
	}
	res, err := actions.ResetPassword(ctx, a.APIClient, actions.PasswordReset{
		Ref: o.Ref.ref(), Password: pw, RecoveryExpiresIn: o.ExpiresIn.String(), LoginUI: a.loginUI,
	})
	if err != nil {
		return a.Explain(err)
	}
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, res)
	}
	w := o.g.Streams.Out
	if res.PasswordSet {
		fmt.Fprintf(w, "password of %s set\n", identityName(res.IdentityID))
		return nil
	}
	if res.Recovery.HasLoginUI() {
		fmt.Fprintf(w, "recovery issued for %s: open the link and enter the code to choose a new password\n", identityName(res.IdentityID))
	} else {
		fmt.Fprintf(w, "recovery issued for %s\n", identityName(res.IdentityID))
	}
	printRecovery(w, res.Recovery, res.IdentityID, a.target)
	return nil
}
