package actions

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	client "github.com/ory/kratos-client-go"
)

// Second-factor credential types that ResetMFA removes (the charm's allowed MFA types).
const (
	MFATOTP         = "totp"
	MFALookupSecret = "lookup_secret"
	MFAWebAuthn     = "webauthn"
)

// MFATypes lists the types ResetMFA accepts.
var MFATypes = []string{MFATOTP, MFALookupSecret, MFAWebAuthn}

// ValidateMFAType refuses a type ResetMFA does not remove.
func ValidateMFAType(t string) error {
	for _, x := range MFATypes {
		if t == x {
			return nil
		}
	}
	return invalidf("MFA type %q: want one of %s", t, strings.Join(MFATypes, ", "))
}

// ResetMFAResult is the outcome of ResetMFA.
type ResetMFAResult struct {
	IdentityID string `json:"identity_id"`
	Type       string `json:"type"`
	// Removed is false when the identity had no credential of that type (still a success).
	Removed bool `json:"removed"`
}

// ResetMFA removes an identity's second-factor credential of type mfaType, so that its owner
// enrols again. For webauthn, Kratos removes the second-factor keys and keeps passwordless ones.
func ResetMFA(ctx context.Context, c *client.APIClient, ref Ref, mfaType string) (*ResetMFAResult, error) {
	if err := ValidateMFAType(mfaType); err != nil {
		return nil, err
	}
	i, err := resolve(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	res := &ResetMFAResult{IdentityID: i.Id, Type: mfaType}
	if i.Credentials != nil {
		if cred, ok := (*i.Credentials)[mfaType]; !ok || !enrolled(mfaType, cred) {
			return res, nil
		}
	}
	op := fmt.Sprintf("remove %s credentials of identity %s", mfaType, i.Id)
	resp, err := c.IdentityAPI.DeleteIdentityCredentials(ctx, i.Id, mfaType).Execute()
	if err != nil {
		err = apiError(op, resp, err)
		if statusOf(err) == http.StatusNotFound {
			// Removed concurrently, or never set: the outcome the caller wants either way.
			return res, nil
		}
		return nil, err
	}
	if err := noContent(op, resp); err != nil {
		return nil, err
	}
	res.Removed = true
	return res, nil
}

// enrolled reports whether a credential holds a second factor. With a schema that makes the
// email a WebAuthn identifier (the built-in ones do, for passwordless), Kratos keeps a webauthn
// credential with identifiers but no keys on every identity: that is nothing to reset.
func enrolled(mfaType string, cred client.IdentityCredentials) bool {
	if mfaType != MFAWebAuthn {
		return true
	}
	keys, _ := cred.Config["credentials"].([]any)
	return len(keys) > 0
}
