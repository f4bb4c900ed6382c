package actions

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	client "github.com/ory/kratos-client-go"
)

// AdminSchemaID is the identity schema of administrator accounts (the built-in `admin` schema:
// traits username, email, name, phone_number, as in the charm's admin schema).
const AdminSchemaID = "admin"

// Trait names of the admin schema.
const (
	TraitUsername = "username"
	TraitEmail    = "email"
	TraitName     = "name"
	TraitPhone    = "phone_number"
)

// DefaultRecoveryExpiresIn is how long a recovery code lives when the caller does not say (the
// charm's value).
const DefaultRecoveryExpiresIn = "1h"

// AdminAccount describes the administrator account to create.
type AdminAccount struct {
	Username string
	Email    string
	Name     string // optional
	Phone    string // optional
	// Password is set as the account's password; empty: the result carries a recovery link and
	// code instead, with which the administrator chooses one.
	Password string
	// SchemaID defaults to AdminSchemaID.
	SchemaID string
	// RecoveryExpiresIn is a Go duration (e.g. "1h"); empty: DefaultRecoveryExpiresIn.
	RecoveryExpiresIn string
	// LoginUI is the instance's login UI (its kratos-injector.io/ui-url), "" when it has none or
	// the caller does not know: the recovery names it (Recovery.LoginUI).
	LoginUI string
}

// Validate checks the fields that need no API call.
func (a AdminAccount) Validate() error {
	switch {
	case strings.TrimSpace(a.Username) == "":
		return invalidf("a username is required")
	case !strings.Contains(a.Email, "@"):
		return invalidf("email %q is not an email address", a.Email)
	}
	return nil
}

// Recovery is the admin-issued recovery of an account: a recovery flow and a code for it, with
// which the account's owner chooses a new password before ExpiresAt. With a login UI, the link
// opens the flow on its recovery page, where the code is entered.
type Recovery struct {
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// FlowID is the recovery flow the code is for.
	FlowID string `json:"flow_id"`
	// LoginUI is the instance's login UI as the caller named it (its ui-url; see
	// AdminAccount.LoginUI); absent when it named none.
	LoginUI string `json:"login_ui,omitempty"`
	// RecoveryCode is a credential: it is shown to the operator, who hands it to the account's
	// owner, and never logged.
	RecoveryCode string `json:"recovery_code"`
	// RecoveryLink is the login UI's recovery page for the flow (<ui-url>/ui/recovery?flow=<id>
	// for an injected Kratos); absent when Kratos has no login UI, since the link Kratos then
	// issues leads to a page of its documentation.
	RecoveryLink string `json:"recovery_link,omitempty"`
}

// HasLoginUI reports whether the recovery has a link to open: whether Kratos has a login UI.
func (r *Recovery) HasLoginUI() bool { return r != nil && r.RecoveryLink != "" }

// kratosFallback is where Kratos's self-service flows lead when no ui_url is configured:
// https://www.ory.sh/kratos/docs/fallback/<flow>, Kratos's default for every flow's ui_url.
const kratosFallback = "https://www.ory.sh/kratos/docs/fallback/"

// recovery makes a Recovery of Kratos's answer. Kratos builds its recovery_link from the
// recovery flow's ui_url, the login UI's recovery page (the one config renders from ui-url,
// unless the config overlay moves it), so that link is the UI's page for the flow whatever the
// caller knows; it is dropped when it is Kratos's fallback, a page of its documentation. The
// caller's loginUI (from a pod's annotation, which may have changed since Kratos started) names
// the UI; it never makes a link.
func recovery(rec *client.RecoveryCodeForIdentity, loginUI string) (*Recovery, error) {
	u, err := url.Parse(rec.RecoveryLink)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Query().Get("flow") == "" {
		return nil, &MalformedError{Problem: fmt.Sprintf("has a recovery_link that is not a URL of a recovery flow (%q)", firstLine(rec.RecoveryLink, 60))}
	}
	if rec.RecoveryCode == "" {
		return nil, &MalformedError{Problem: "has no recovery_code"}
	}
	r := &Recovery{
		ExpiresAt:    rec.ExpiresAt,
		FlowID:       u.Query().Get("flow"),
		LoginUI:      loginUI,
		RecoveryCode: rec.RecoveryCode,
	}
	if !strings.HasPrefix(rec.RecoveryLink, kratosFallback) {
		r.RecoveryLink = rec.RecoveryLink
	}
	return r, nil
}

// CreateAdminResult is the created identity and, when no password was given, its recovery.
type CreateAdminResult struct {
	Identity *client.Identity `json:"identity"`
	Recovery *Recovery        `json:"recovery,omitempty"`
}

// CreateAdmin creates an administrator account with the admin schema. It refuses an email that
// already is a login identifier (checked first, so that no half-created account is left behind;
// a 409 from Kratos, e.g. a taken username, is refused the same way).
func CreateAdmin(ctx context.Context, c *client.APIClient, a AdminAccount) (*CreateAdminResult, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	existing, err := findByEmail(ctx, c, a.Email)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		return nil, &ConflictError{Message: fmt.Sprintf("email %q is already used by identity %s", a.Email, existing[0].Id)}
	}

	traits := map[string]interface{}{TraitUsername: a.Username, TraitEmail: a.Email}
	if a.Name != "" {
		traits[TraitName] = a.Name
	}
	if a.Phone != "" {
		traits[TraitPhone] = a.Phone
	}
	schema := a.SchemaID
	if schema == "" {
		schema = AdminSchemaID
	}
	body := client.NewCreateIdentityBody(schema, traits)
	if a.Password != "" {
		pw := a.Password
		body.Credentials = &client.IdentityWithCredentials{Password: &client.IdentityWithCredentialsPassword{
			Config: &client.IdentityWithCredentialsPasswordConfig{Password: &pw},
		}}
	}
	i, resp, err := c.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(*body).Execute()
	if err != nil {
		err = apiError("create admin account", resp, err)
		if statusOf(err) == http.StatusConflict {
			return nil, &ConflictError{Message: fmt.Sprintf("an identity with username %q or email %q already exists", a.Username, a.Email), Cause: err}
		}
		return nil, err
	}
	if i == nil {
		return nil, missing("create admin account", resp)
	}
	res := &CreateAdminResult{Identity: i}
	if a.Password == "" {
		rec, err := createRecovery(ctx, c, i.Id, a.RecoveryExpiresIn, a.LoginUI)
		if err != nil {
			return res, fmt.Errorf("account %s created, but: %w", i.Id, err)
		}
		res.Recovery = rec
	}
	return res, nil
}

// createRecovery issues a recovery flow and code for the identity (as the charm does); loginUI
// is the caller's AdminAccount.LoginUI.
func createRecovery(ctx context.Context, c *client.APIClient, id, expiresIn, loginUI string) (*Recovery, error) {
	if expiresIn == "" {
		expiresIn = DefaultRecoveryExpiresIn
	}
	body := client.NewCreateRecoveryCodeForIdentityBody(id)
	body.ExpiresIn = &expiresIn
	rec, resp, err := c.IdentityAPI.CreateRecoveryCodeForIdentity(ctx).CreateRecoveryCodeForIdentityBody(*body).Execute()
	if err != nil {
		return nil, apiError("create recovery code for identity "+id, resp, err)
	}
	if rec == nil {
		return nil, missing("create recovery code for identity "+id, resp)
	}
	r, err := recovery(rec, loginUI)
	if err != nil {
		return nil, fmt.Errorf("create recovery code for identity %s: %w", id, err)
	}
	return r, nil
}
