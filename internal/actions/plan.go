package actions

import (
	"context"
	"fmt"
	"net/http"

	client "github.com/ory/kratos-client-go"
)

// Kratos's admin API has no dry-run. The Plan functions are the server-side dry-run of the
// actions that change something (`--dry-run=server`): with read-only calls only, they check
// everything the action would check (the identity exists and is the only one with that email,
// it has that credential, that OIDC link, sessions...), fail with the action's own errors, and
// say what the action would change. What only the write itself can tell (e.g. whether Kratos's
// password policy accepts a password) is said in the plan, never tried.

// Plan is what an action would do to one identity.
type Plan struct {
	Action     string `json:"action"`
	IdentityID string `json:"identity_id,omitempty"`
	// Change says what would change, in one sentence (e.g. "delete the identity and its 2 sessions").
	Change string `json:"change"`
	// NoOp is true when the action would change nothing (still a success).
	NoOp bool `json:"noop"`
}

// Resolve returns the identity ref designates (one GET by ID, one lookup by email), or a
// NotFoundError or an AmbiguousError: for a caller that checks several identities before
// acting on any.
func Resolve(ctx context.Context, c *client.APIClient, ref Ref) (*client.Identity, error) {
	return resolve(ctx, c, ref)
}

// PlanDelete checks that ref designates exactly one identity, and counts its sessions.
func PlanDelete(ctx context.Context, c *client.APIClient, ref Ref) (*Plan, error) {
	i, err := resolve(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	n, _, err := countSessions(ctx, c, i.Id)
	if err != nil {
		return nil, err
	}
	return &Plan{Action: "delete", IdentityID: i.Id, Change: fmt.Sprintf("delete the identity and its %s", plural(n, "session"))}, nil
}

// PlanInvalidateSessions says how many sessions InvalidateSessions would revoke.
func PlanInvalidateSessions(ctx context.Context, c *client.APIClient, ref Ref) (*Plan, error) {
	i, err := resolve(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	n, active, err := countSessions(ctx, c, i.Id)
	if err != nil {
		return nil, err
	}
	p := &Plan{Action: "invalidate-sessions", IdentityID: i.Id}
	if n == 0 {
		p.NoOp, p.Change = true, "no session: nothing to revoke"
		return p, nil
	}
	p.Change = fmt.Sprintf("revoke and delete %s (%d active)", plural(n, "session"), active)
	return p, nil
}

// PlanResetPassword checks the identity and says what ResetPassword would do.
func PlanResetPassword(ctx context.Context, c *client.APIClient, ref Ref, withPassword bool, expiresIn string) (*Plan, error) {
	i, err := resolve(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	p := &Plan{Action: "reset-password", IdentityID: i.Id}
	if withPassword {
		p.Change = "set the password (Kratos's password policy is checked only when it is set)"
		return p, nil
	}
	if expiresIn == "" {
		expiresIn = DefaultRecoveryExpiresIn
	}
	p.Change = fmt.Sprintf("issue a recovery link and code valid for %s", expiresIn)
	return p, nil
}

// PlanResetMFA says whether ResetMFA would remove a credential.
func PlanResetMFA(ctx context.Context, c *client.APIClient, ref Ref, mfaType string) (*Plan, error) {
	if err := ValidateMFAType(mfaType); err != nil {
		return nil, err
	}
	i, err := resolve(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	p := &Plan{Action: "reset-mfa", IdentityID: i.Id, Change: fmt.Sprintf("remove the %s credentials", mfaType)}
	if i.Credentials != nil {
		if cred, ok := (*i.Credentials)[mfaType]; !ok || !enrolled(mfaType, cred) {
			p.NoOp, p.Change = true, fmt.Sprintf("no %s credentials: nothing to reset", mfaType)
		}
	}
	return p, nil
}

// PlanUnlinkOIDC checks that the account is linked to the identity.
func PlanUnlinkOIDC(ctx context.Context, c *client.APIClient, ref Ref, identifier string) (*Plan, error) {
	i, err := linkedOIDC(ctx, c, ref, identifier)
	if err != nil {
		return nil, err
	}
	return &Plan{Action: "oidc-unlink", IdentityID: i.Id, Change: fmt.Sprintf("unlink the OIDC account %s", identifier)}, nil
}

// PlanCreateAdmin checks what CreateAdmin would check, and more: the email and the username
// are not login identifiers yet, and the identity schema exists.
func PlanCreateAdmin(ctx context.Context, c *client.APIClient, a AdminAccount) (*Plan, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	for _, ident := range []string{a.Email, a.Username} {
		existing, err := findByEmail(ctx, c, ident)
		if err != nil {
			return nil, err
		}
		if len(existing) > 0 {
			return nil, &ConflictError{Message: fmt.Sprintf("%q is already a login identifier of identity %s", ident, existing[0].Id)}
		}
	}
	schema := a.SchemaID
	if schema == "" {
		schema = AdminSchemaID
	}
	_, resp, err := c.IdentityAPI.GetIdentitySchema(ctx, schema).Execute()
	if err != nil {
		err = apiError("get identity schema "+schema, resp, err)
		if statusOf(err) == http.StatusNotFound {
			return nil, invalidf("identity schema %q does not exist in this Kratos", schema)
		}
		return nil, err
	}
	change := fmt.Sprintf("create an identity with schema %s, username %q and email %q", schema, a.Username, a.Email)
	if a.Password != "" {
		change += ", with the password given"
	} else {
		change += ", and issue a recovery link and code"
	}
	return &Plan{Action: "create-admin", Change: change}, nil
}

// countSessions counts the sessions of an identity (all pages), and the active ones.
func countSessions(ctx context.Context, c *client.APIClient, id string) (total, active int, err error) {
	token := ""
	for page := 1; ; page++ {
		req := c.IdentityAPI.ListIdentitySessions(ctx, id).PageSize(1000)
		if token != "" {
			req = req.PageToken(token)
		}
		ss, resp, err := req.Execute()
		if err != nil {
			err = apiError(fmt.Sprintf("list sessions of identity %s (page %d)", id, page), resp, err)
			if statusOf(err) == http.StatusNotFound {
				return 0, 0, &NotFoundError{Ref: Ref{ID: id}, Cause: err}
			}
			return 0, 0, err
		}
		for _, s := range ss {
			total++
			if s.Active != nil && *s.Active {
				active++
			}
		}
		next := nextPageToken(resp.Header.Values("Link"))
		if next == "" || len(ss) == 0 || next == token {
			return total, active, nil
		}
		token = next
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
