package actions

import (
	"context"
	"fmt"
	"net/http"
	"strings"

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

// Recovery is the admin-issued recovery of an account: the link opens the recovery UI, where the
// code is entered, before ExpiresAt.
type Recovery = client.RecoveryCodeForIdentity

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
		rec, err := createRecovery(ctx, c, i.Id, a.RecoveryExpiresIn)
		if err != nil {
			return res, fmt.Errorf("account %s created, but: %w", i.Id, err)
		}
		res.Recovery = rec
	}
	return res, nil
}

// createRecovery issues a recovery link and code for the identity (as the charm does).
func createRecovery(ctx context.Context, c *client.APIClient, id, expiresIn string) (*Recovery, error) {
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
	return rec, nil
}
