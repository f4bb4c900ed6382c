package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

func newIdentityCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "identity",
		Aliases: []string{"identities"},
		Short:   "Administer identities through the Kratos admin API",
		Args:    noArgs,
		RunE:    helpOrUnknown,
	}
	cmd.AddCommand(
		newCreateAdminCmd(g),
		newGetCmd(g),
		newListCmd(g),
		newDeleteCmd(g),
		newResetPasswordCmd(g),
		newInvalidateSessionsCmd(g),
		newResetMFACmd(g),
		newOIDCCmd(g),
		newExportCmd(g),
		newImportCmd(g),
	)
	return cmd
}

// refFlags address one identity: the positional ID or --email.
type refFlags struct {
	ID    string
	Email string
}

func (r *refFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.Email, "email", "", "address the identity by its email login identifier instead of its ID (must match exactly one)")
}

// completeRef completes the identity ID argument and --email of cmd with the identities of the
// selected instance.
func completeRef(g *Globals, cmd *cobra.Command, maxArgs int) {
	cmd.ValidArgsFunction = g.completeIdentities(false, maxArgs)
	_ = cmd.RegisterFlagCompletionFunc("email", g.completeIdentities(true, 0))
}

func (r *refFlags) complete(args []string) {
	if len(args) == 1 {
		r.ID = args[0]
	}
}

func (r *refFlags) ref() actions.Ref { return actions.Ref{ID: r.ID, Email: r.Email} }

func (r *refFlags) Validate() error { return r.ref().Validate() }

// identityName is how results name an identity, kubectl style.
func identityName(id string) string { return fmt.Sprintf("identity/%s", id) }
