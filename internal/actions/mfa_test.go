package actions_test

import (
	"errors"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// TestResetMFA enrols TOTP and lookup secrets (recovery codes) the way a user does, through
// self-service settings flows, then resets each.
func TestResetMFA(t *testing.T) {
	c, _ := adminClient(t)
	srv := kratos(t)
	mail := email(t, "user")
	i := createUser(t, c, mail, strongPassword)
	tok := login(t, mail, strongPassword)
	if err := srv.EnrolTOTP(ctx(t), tok); err != nil {
		t.Fatalf("enrol TOTP: %v", err)
	}
	if err := srv.EnrolLookupSecret(ctx(t), tok); err != nil {
		t.Fatalf("enrol lookup secrets: %v", err)
	}
	types := credentialTypes(t, c, i.Id)
	if !has(types, "totp") || !has(types, "lookup_secret") {
		t.Fatalf("after enrolment the identity has %v, want totp and lookup_secret", types)
	}

	for _, typ := range []string{actions.MFATOTP, actions.MFALookupSecret} {
		res, err := actions.ResetMFA(ctx(t), c, actions.Ref{Email: mail}, typ)
		if err != nil {
			t.Fatalf("reset %s: %v", typ, err)
		}
		if !res.Removed || res.IdentityID != i.Id || res.Type != typ {
			t.Fatalf("reset %s: %+v", typ, res)
		}
		if has(credentialTypes(t, c, i.Id), typ) {
			t.Fatalf("%s still set after reset", typ)
		}
		res, err = actions.ResetMFA(ctx(t), c, actions.Ref{ID: i.Id}, typ)
		if err != nil || res.Removed {
			t.Fatalf("second reset of %s: %+v, %v; want success with removed=false", typ, res, err)
		}
	}
	if !has(credentialTypes(t, c, i.Id), "password") {
		t.Fatal("the password went with the second factors")
	}
	login(t, mail, strongPassword)

	res, err := actions.ResetMFA(ctx(t), c, actions.Ref{ID: i.Id}, actions.MFAWebAuthn)
	if err != nil || res.Removed {
		t.Fatalf("webauthn never set: %+v, %v; want success with removed=false", res, err)
	}
	if _, err := actions.ResetMFA(ctx(t), c, actions.Ref{ID: i.Id}, "password"); !errors.Is(err, actions.ErrInvalid) {
		t.Fatalf("type password: got %v, want ErrInvalid", err)
	}
}
