package actions

import (
	"context"
	"fmt"
	"net/http"

	client "github.com/ory/kratos-client-go"
)

// PasswordReset says whose password to reset and how.
type PasswordReset struct {
	Ref Ref
	// Password becomes the identity's password; empty: a recovery link and code are issued.
	Password string
	// RecoveryExpiresIn is a Go duration; empty: DefaultRecoveryExpiresIn.
	RecoveryExpiresIn string
	// LoginUI is as AdminAccount.LoginUI.
	LoginUI string
}

// ResetPasswordResult is the outcome of ResetPassword.
type ResetPasswordResult struct {
	IdentityID  string    `json:"identity_id"`
	PasswordSet bool      `json:"password_set"`
	Recovery    *Recovery `json:"recovery,omitempty"`
}

// ResetPassword sets an identity's password, or, with no password, issues a recovery link and
// code so that its owner chooses one.
//
// The password is set with a GET followed by a full PUT (UpdateIdentity) that carries schema,
// state, traits and both metadata over, since PUT clears what it omits; Kratos hashes the
// imported credentials.password.config.password. Never PatchIdentity: it answers 200 and stores
// the password in plain text, so that logging in fails.
func ResetPassword(ctx context.Context, c *client.APIClient, in PasswordReset) (*ResetPasswordResult, error) {
	if in.Password == "" {
		id, err := resolveID(ctx, c, in.Ref)
		if err != nil {
			return nil, err
		}
		rec, err := createRecovery(ctx, c, id, in.RecoveryExpiresIn, in.LoginUI)
		if err != nil {
			if statusOf(err) == http.StatusNotFound {
				return nil, &NotFoundError{Ref: Ref{ID: id}, Cause: err}
			}
			return nil, err
		}
		return &ResetPasswordResult{IdentityID: id, Recovery: rec}, nil
	}

	i, err := resolve(ctx, c, in.Ref)
	if err != nil {
		return nil, err
	}
	traits, ok := i.Traits.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("identity %s: traits are a %T, not an object", i.Id, i.Traits)
	}
	state := "active"
	if i.State != nil && *i.State != "" {
		state = *i.State
	}
	body := client.NewUpdateIdentityBody(i.SchemaId, state, traits)
	body.MetadataPublic = i.MetadataPublic
	body.MetadataAdmin = i.MetadataAdmin
	pw := in.Password
	body.Credentials = &client.IdentityWithCredentials{Password: &client.IdentityWithCredentialsPassword{
		Config: &client.IdentityWithCredentialsPasswordConfig{Password: &pw},
	}}
	updated, resp, err := c.IdentityAPI.UpdateIdentity(ctx, i.Id).UpdateIdentityBody(*body).Execute()
	if err != nil {
		err = apiError("set password of identity "+i.Id, resp, err)
		if statusOf(err) == http.StatusNotFound {
			return nil, &NotFoundError{Ref: Ref{ID: i.Id}, Cause: err}
		}
		return nil, err
	}
	if updated == nil {
		return nil, missing("set password of identity "+i.Id, resp)
	}
	return &ResetPasswordResult{IdentityID: i.Id, PasswordSet: true}, nil
}
