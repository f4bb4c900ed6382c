package actions_test

import (
	"errors"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
)

func TestInvalidateSessions(t *testing.T) {
	c, _ := adminClient(t)
	srv := kratos(t)
	mail := email(t, "user")
	i := createUser(t, c, mail, strongPassword)
	other := email(t, "bystander")
	createUser(t, c, other, strongPassword)

	tokens := []string{login(t, mail, strongPassword), login(t, mail, strongPassword)}
	bystander := login(t, other, strongPassword)
	for _, tok := range tokens {
		if err := srv.Whoami(ctx(t), tok); err != nil {
			t.Fatalf("fresh session: %v", err)
		}
	}

	res, err := actions.InvalidateSessions(ctx(t), c, actions.Ref{Email: mail})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Revoked || res.IdentityID != i.Id {
		t.Fatalf("result %+v", res)
	}
	for _, tok := range tokens {
		if err := srv.Whoami(ctx(t), tok); !errors.Is(err, kratostest.ErrUnauthorized) {
			t.Fatalf("revoked session: whoami = %v, want 401", err)
		}
	}
	if err := srv.Whoami(ctx(t), bystander); err != nil {
		t.Fatalf("another identity's session was revoked too: %v", err)
	}

	// Nothing left to revoke: a success that says so.
	res, err = actions.InvalidateSessions(ctx(t), c, actions.Ref{ID: i.Id})
	if err != nil || res.Revoked {
		t.Fatalf("second run: %+v, %v; want success with revoked=false", res, err)
	}

	if _, err := actions.InvalidateSessions(ctx(t), c, actions.Ref{ID: "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"}); !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("unknown ID: got %v, want ErrNotFound (not 'no session')", err)
	}
}
