package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"time"

	client "github.com/ory/kratos-client-go"
	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// ExportOptions are `identity export`.
type ExportOptions struct {
	g        *Globals
	IDs      []string
	Emails   []string
	PageSize int64
}

func newExportCmd(g *Globals) *cobra.Command {
	o := &ExportOptions{g: g}
	cmd := &cobra.Command{
		Use:   "export [--id ID]... [--email EMAIL]... > identities.jsonl",
		Short: "Write identities, with their password hashes and OIDC accounts, as JSON lines (for identity import)",
		Long: `Write every identity of the instance (or those named with --id and --email) to standard output,
one JSON document per line, in Kratos's own format: traits, state, both metadata, verifiable and
recovery addresses, and the credentials as the admin API gives them with include_credential:
the password's hash (hashed_password) and the OIDC accounts' providers and subjects. OIDC tokens
are left out, and so are second factors (TOTP, WebAuthn, lookup secrets), which cannot be
imported. The identities are read page by page and written as they come: the plugin holds one
page at a time, whatever the number of identities.

The output holds password hashes: keep it as you keep a database backup.`,
		Example: `  kubectl kratos identity export > identities.jsonl
  kubectl kratos identity export --email ada@example.com --email grace@example.com
  kubectl kratos identity export --instance old | kubectl kratos identity import --instance new -f -`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().StringArrayVar(&o.IDs, "id", nil, "export this identity (repeatable)")
	cmd.Flags().StringArrayVar(&o.Emails, "email", nil, "export the identities with this login identifier (repeatable)")
	cmd.Flags().Int64Var(&o.PageSize, "page-size", 500, "identities per admin API call (1 to 1000)")
	_ = cmd.RegisterFlagCompletionFunc("id", g.completeIdentities(false, 0))
	_ = cmd.RegisterFlagCompletionFunc("email", g.completeIdentities(true, 0))
	return cmd
}

func (o *ExportOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *ExportOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.PageSize < 1 || o.PageSize > 1000 {
		return fmt.Errorf("--page-size %d: want 1 to 1000", o.PageSize)
	}
	for _, id := range o.IDs {
		if err := (actions.Ref{ID: id}).Validate(); err != nil {
			return err
		}
	}
	for _, e := range o.Emails {
		if err := (actions.Ref{Email: e}).Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (o *ExportOptions) Run(ctx context.Context) error {
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	w := bufio.NewWriterSize(o.g.Streams.Out, 64<<10)
	start := time.Now()
	n := 0
	err = actions.ExportIdentities(ctx, a.APIClient, actions.ExportOptions{IDs: o.IDs, Emails: o.Emails, PageSize: o.PageSize},
		func(i *client.Identity) error {
			b, err := json.Marshal(i)
			if err != nil {
				return fmt.Errorf("encode identity %s: %w", i.Id, err)
			}
			// One line of exact JSON: DEL and the C1 controls escaped as \u, as in -o json.
			if _, err := w.Write(append(escapeJSONControls(b), '\n')); err != nil {
				return err
			}
			n++
			return nil
		})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("%w (%d identities written)", a.Explain(err), n)
	}
	took := time.Since(start)
	fmt.Fprintf(o.g.Streams.ErrOut, "Exported %s in %s%s.\n", identities(n), took.Round(10*time.Millisecond), rate(n, took))
	return nil
}

// rate is ", N/s" for n items in d, when it means something.
func rate(n int, d time.Duration) string {
	if n < 100 || d <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%.0f/s)", float64(n)/d.Seconds())
}

// identities is "1 identity", "2 identities".
func identities(n int) string {
	if n == 1 {
		return "1 identity"
	}
	return fmt.Sprintf("%d identities", n)
}
