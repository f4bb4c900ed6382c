package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// DeleteOptions are `identity delete`.
type DeleteOptions struct {
	g       *Globals
	IDs     []string
	Emails  []string
	DryRun  dryRunFlags
	Confirm confirmFlags
	Output  outputFlags
}

func newDeleteCmd(g *Globals) *cobra.Command {
	o := &DeleteOptions{g: g}
	cmd := &cobra.Command{
		Use:   "delete (ID... | --email EMAIL...)",
		Short: "Delete identities (and their sessions); each --email must match exactly one",
		Long: `Delete identities, named by ID or by email login identifier (each must match exactly one
identity). Every identity is looked up before any is deleted, so that a typo deletes nothing.
More than one identity needs --yes, or a y/N answer when standard input is a terminal.
--dry-run=server shows what would be deleted (and how many sessions) without deleting.`,
		Example: `  kubectl kratos identity delete --email ada@example.com --dry-run=server
  kubectl kratos identity delete 9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51 0b0f6b0e-1b8e-4a53-9a3c-7c5d1e2f3a4b --yes`,
		RunE: runE(o),
	}
	cmd.Flags().StringArrayVar(&o.Emails, "email", nil, "address an identity by its email login identifier instead of its ID (must match exactly one); repeatable")
	completeRef(g, cmd, 0)
	o.DryRun.add(cmd)
	o.Confirm.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *DeleteOptions) Complete(_ *cobra.Command, args []string) error {
	o.IDs = args
	return nil
}

func (o *DeleteOptions) refs() []actions.Ref {
	refs := make([]actions.Ref, 0, len(o.IDs)+len(o.Emails))
	for _, id := range o.IDs {
		refs = append(refs, actions.Ref{ID: id})
	}
	for _, e := range o.Emails {
		refs = append(refs, actions.Ref{Email: e})
	}
	return refs
}

func (o *DeleteOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	refs := o.refs()
	if len(refs) == 0 {
		return errors.New("give an identity ID or --email")
	}
	for _, r := range refs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *DeleteOptions) Run(ctx context.Context) error {
	refs := o.refs()
	w := o.g.Streams.Out
	if o.DryRun.client() {
		for _, r := range refs {
			if err := o.DryRun.printPlan(w, &o.Output, &actions.Plan{Action: "delete", Change: "delete the identity and its sessions"}, givenName(r)); err != nil {
				return err
			}
		}
		return nil
	}
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if o.DryRun.server() {
		for _, r := range refs {
			p, err := actions.PlanDelete(ctx, a.APIClient, r)
			if err != nil {
				return a.Explain(err)
			}
			if err := o.DryRun.printPlan(w, &o.Output, p, ""); err != nil {
				return err
			}
		}
		return nil
	}
	// One identity: delete it (by email, after the lookup that refuses ambiguity). Several:
	// look every one up first, so that an unknown or ambiguous one deletes nothing, then ask.
	ids := []string{}
	if len(refs) == 1 {
		ids = append(ids, "")
	} else {
		seen := map[string]bool{}
		for _, r := range refs {
			i, err := actions.Resolve(ctx, a.APIClient, r)
			if err != nil {
				return a.Explain(err)
			}
			if !seen[i.Id] { // an ID and an email may name the same identity
				seen[i.Id] = true
				ids = append(ids, i.Id)
			}
		}
		if len(ids) > 1 {
			if err := o.Confirm.confirm(o.g, fmt.Sprintf("Delete %d identities and their sessions?", len(ids))); err != nil {
				return err
			}
		}
	}
	var failed int
	for _, target := range ids {
		ref := actions.Ref{ID: target}
		if target == "" {
			ref = refs[0]
		}
		id, err := actions.DeleteIdentity(ctx, a.APIClient, ref)
		if err != nil {
			if len(ids) == 1 {
				return a.Explain(err)
			}
			failed++
			fmt.Fprintf(o.g.Streams.ErrOut, "error: %v\n", a.Explain(err))
			continue
		}
		if o.Output.structured() {
			if err := o.Output.printStructured(w, map[string]interface{}{"identity_id": id, "deleted": true}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(w, "%s deleted\n", identityName(id))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d identities not deleted (see above)", failed, len(ids))
	}
	return nil
}
