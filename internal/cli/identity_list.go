package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// ListOptions are `identity list`.
type ListOptions struct {
	g        *Globals
	PageSize int64
	Limit    int
	Output   outputFlags
}

func newListCmd(g *Globals) *cobra.Command {
	o := &ListOptions{g: g}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List identities (all pages, unless --limit)",
		Example: `  kubectl kratos identity list
  kubectl kratos identity list --page-size 500 -o json | jq -r '.items[].traits.email'
  kubectl kratos identity list -o custom-columns=ID:.id,EMAIL:.traits.email,VERIFIED:.verifiable_addresses[*].verified
  kubectl kratos identity list -o jsonpath='{range .items[*]}{.id}{"\t"}{.traits.email}{"\n"}{end}'
  kubectl kratos identity list -o name`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().Int64Var(&o.PageSize, "page-size", 0, "identities per admin API call (0: Kratos's default, 250)")
	cmd.Flags().IntVar(&o.Limit, "limit", 0, "stop after this many identities (0: all)")
	o.Output.addObjects(cmd, true)
	return cmd
}

func (o *ListOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *ListOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.PageSize < 0 || o.PageSize > 10000 {
		return fmt.Errorf("--page-size %d: want 1 to 10000 (or 0 for Kratos's default)", o.PageSize)
	}
	if o.Limit < 0 {
		return errors.New("--limit must not be negative")
	}
	return o.Output.Validate()
}

func (o *ListOptions) Run(ctx context.Context) error {
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	ids, err := actions.ListIdentities(ctx, a.APIClient, actions.ListOptions{PageSize: o.PageSize, Limit: o.Limit})
	if err != nil {
		return a.Explain(err)
	}
	if len(ids) == 0 && o.Output.table() {
		fmt.Fprintln(o.g.Streams.ErrOut, "No identities found.")
		return nil
	}
	return o.Output.printIdentities(o.g.Streams.Out, ids, false)
}
