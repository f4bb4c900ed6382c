package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"time"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// CreateAdminOptions are `identity create-admin`.
type CreateAdminOptions struct {
	g         *Globals
	Username  string
	Email     string
	Name      string
	Phone     string
	Schema    string
	ExpiresIn time.Duration
	Password  passwordFlags
	DryRun    dryRunFlags
	Output    outputFlags
}

func newCreateAdminCmd(g *Globals) *cobra.Command {
	o := &CreateAdminOptions{g: g}
	cmd := &cobra.Command{
		Use:   "create-admin --username USER --email EMAIL [--name NAME] [--phone PHONE] [--password-stdin | --password-secret NAME[/KEY]]",
		Short: "Create an administrator account (admin identity schema)",
		Long: `Create an administrator account with the "admin" identity schema (traits username, email,
name, phone_number). Without a password, the result is a recovery code with which the
administrator sets one: with a login UI (the kratos-injector.io/ui-url annotation of the
instance's pod), a link to its recovery page for the code's flow; without one, the flow's ID and
how to submit the code to Kratos's public API. The password is never a command-line argument:
pipe it to --password-stdin or keep it in a Secret of the namespace.`,
		Example: `  kubectl kratos identity create-admin --username ada --email ada@example.com
  printf %s "$PW" | kubectl kratos identity create-admin --username ada --email ada@example.com --password-stdin
  kubectl kratos identity create-admin --username ada --email ada@example.com --password-secret ada-password`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().StringVar(&o.Username, "username", "", "login username (required)")
	cmd.Flags().StringVar(&o.Email, "email", "", "email address, also a login identifier (required)")
	cmd.Flags().StringVar(&o.Name, "name", "", "full name")
	cmd.Flags().StringVar(&o.Phone, "phone", "", "phone number")
	cmd.Flags().StringVar(&o.Schema, "schema", actions.AdminSchemaID, "identity schema of the account")
	cmd.Flags().DurationVar(&o.ExpiresIn, "expires-in", time.Hour, "lifetime of the recovery code issued when no password is given")
	o.Password.add(cmd)
	o.DryRun.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *CreateAdminOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *CreateAdminOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	switch {
	case o.Username == "":
		return errors.New("--username is required")
	case o.Email == "":
		return errors.New("--email is required")
	case o.Schema == "":
		return errors.New("--schema must not be empty")
	}
	if a, err := mail.ParseAddress(o.Email); err != nil || a.Address != o.Email {
		return fmt.Errorf("--email %q is not an email address", o.Email)
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

func validateExpiresIn(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("--expires-in %s: must be positive", d)
	}
	if d%time.Second != 0 {
		return fmt.Errorf("--expires-in %s: whole seconds only", d)
	}
	return nil
}

func (o *CreateAdminOptions) Run(ctx context.Context) error {
	if o.DryRun.client() {
		change := fmt.Sprintf("create an identity with schema %s, username %q and email %q", o.Schema, o.Username, o.Email)
		if o.Password.FromStdin || o.Password.Secret != "" {
			change += ", with the password given"
		} else {
			change += ", and issue a recovery link and code"
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, &actions.Plan{Action: "create-admin", Change: change}, "")
	}
	pw, err := o.Password.read(ctx, o.g)
	if err != nil {
		return err
	}
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	account := actions.AdminAccount{
		Username: o.Username, Email: o.Email, Name: o.Name, Phone: o.Phone, Password: pw,
		SchemaID: o.Schema, RecoveryExpiresIn: o.ExpiresIn.String(), LoginUI: a.loginUI,
	}
	if o.DryRun.server() {
		p, err := actions.PlanCreateAdmin(ctx, a.APIClient, account)
		if err != nil {
			return a.Explain(err)
		}
		return o.DryRun.printPlan(o.g.Streams.Out, &o.Output, p, "")
	}
	res, err := actions.CreateAdmin(ctx, a.APIClient, account)
	if res != nil && res.Identity != nil {
		if perr := o.print(res, a.target); perr != nil && err == nil {
			err = perr
		}
	}
	return a.Explain(err)
}

func (o *CreateAdminOptions) print(res *actions.CreateAdminResult, target string) error {
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, res)
	}
	w := o.g.Streams.Out
	fmt.Fprintf(w, "%s created (admin account %s <%s>)\n", identityName(res.Identity.Id), o.Username, o.Email)
	printRecovery(w, res.Recovery, res.Identity.Id, target)
	return nil
}

// printRecovery shows an admin-issued recovery of identity id: with a login UI, the link to its
// recovery page for the flow and the code, as the charm's actions return them; without one, that
// there is no page to open, and what else to do with the code: its reset-password command carries
// target, the flags that reach the same instance. The code is a credential, printed for the
// operator to hand on, never logged.
func printRecovery(w io.Writer, r *actions.Recovery, id, target string) {
	if r == nil {
		return
	}
	if r.HasLoginUI() {
		fmt.Fprintf(w, "recovery link: %s\n", r.RecoveryLink)
	} else {
		fmt.Fprintln(w, "no login UI is configured (the kratos-injector.io/ui-url annotation sets one): there is no recovery page to open")
		if r.LoginUI != "" {
			fmt.Fprintf(w, "  (the pod's annotation names %s, but its Kratos was not configured with it)\n", r.LoginUI)
		}
		fmt.Fprintf(w, "recovery flow: %s\n", r.FlowID)
	}
	fmt.Fprintf(w, "recovery code: %s\n", r.RecoveryCode)
	if r.ExpiresAt != nil {
		fmt.Fprintf(w, "expires at:    %s\n", r.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !r.HasLoginUI() {
		fmt.Fprintf(w, "to use the code, submit it to the recovery flow on Kratos's public API: POST /self-service/recovery?flow=%s\n", r.FlowID)
		fmt.Fprintln(w, `  with {"method": "code", "code": "<recovery code>"}, keeping the cookies: Kratos signs the owner in and`)
		fmt.Fprintln(w, "  answers with a settings flow, where the new password is set")
		fmt.Fprintf(w, "or set the password yourself: kubectl kratos %sidentity reset-password %s --password-stdin (or --password-secret NAME[/KEY])\n", targetArgs(target), id)
	}
}

// targetArgs is target followed by a space, or "" for none.
func targetArgs(target string) string {
	if target == "" {
		return ""
	}
	return target + " "
}
