package actions_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
)

func TestCreateAdminWithPassword(t *testing.T) {
	c, _ := adminClient(t)
	mail := email(t, "admin")
	user := "admin-" + strings.Split(mail, "@")[0]
	res, err := actions.CreateAdmin(ctx(t), c, actions.AdminAccount{
		Username: user, Email: mail, Name: "Ada Lovelace", Phone: "+44 20 7946 0000", Password: strongPassword,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovery != nil {
		t.Fatalf("a recovery was issued although a password was given")
	}
	i := res.Identity
	if i.SchemaId != actions.AdminSchemaID {
		t.Fatalf("schema %q, want admin", i.SchemaId)
	}
	traits := i.Traits.(map[string]interface{})
	for k, want := range map[string]string{"username": user, "email": mail, "name": "Ada Lovelace", "phone_number": "+44 20 7946 0000"} {
		if traits[k] != want {
			t.Errorf("trait %s = %v, want %q", k, traits[k], want)
		}
	}
	// The password logs in, by username and by email (both are password identifiers).
	login(t, user, strongPassword)
	login(t, mail, strongPassword)
	loginRefused(t, user, strongPassword+"x")
}

func TestCreateAdminWithoutPasswordReturnsRecovery(t *testing.T) {
	c, cnt := adminClient(t)
	mail := email(t, "admin")
	before := time.Now()
	res, err := actions.CreateAdmin(ctx(t), c, actions.AdminAccount{Username: "nopw-" + strings.Split(mail, "@")[0], Email: mail})
	if err != nil {
		t.Fatal(err)
	}
	checkRecovery(t, res.Recovery, before, time.Hour)
	loginRefused(t, mail, strongPassword)

	// The same email again is refused before anything is created: one lookup, no create.
	cnt.reset()
	_, err = actions.CreateAdmin(ctx(t), c, actions.AdminAccount{Username: "other-" + strings.Split(mail, "@")[0], Email: mail})
	var ce *actions.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, actions.ErrConflict) || !strings.Contains(err.Error(), res.Identity.Id) {
		t.Fatalf("second create with the same email: got %v, want a conflict naming %s", err, res.Identity.Id)
	}
	if n := cnt.n.Load(); n != 1 {
		t.Fatalf("refused create made %d calls (%s), want the one lookup", n, cnt)
	}
}

// checkRecovery checks an admin-issued recovery: a link to the recovery flow, a numeric code,
// an expiry about lifetime away.
func checkRecovery(t *testing.T, r *actions.Recovery, before time.Time, lifetime time.Duration) {
	t.Helper()
	if r == nil {
		t.Fatal("no recovery link and code")
	}
	if !strings.HasPrefix(r.RecoveryLink, kratostest.RecoveryUI+"?flow=") {
		t.Errorf("recovery link %q does not open a flow in the recovery UI %s", r.RecoveryLink, kratostest.RecoveryUI)
	}
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(r.RecoveryCode) {
		t.Errorf("recovery code %q is not 6 digits", r.RecoveryCode)
	}
	if r.ExpiresAt == nil {
		t.Fatal("no expiry")
	}
	if exp := r.ExpiresAt.Sub(before); exp < lifetime-time.Minute || exp > lifetime+time.Minute {
		t.Errorf("recovery expires in %s, want about %s", exp, lifetime)
	}
}

func TestCreateAdminConflicts(t *testing.T) {
	c, _ := adminClient(t)
	taken := email(t, "user")
	createUser(t, c, taken, strongPassword)
	_, err := actions.CreateAdmin(ctx(t), c, actions.AdminAccount{Username: "u-" + strings.Split(taken, "@")[0], Email: taken, Password: strongPassword})
	if !errors.Is(err, actions.ErrConflict) {
		t.Fatalf("email of an existing user: got %v, want ErrConflict", err)
	}

	// A taken username is caught by Kratos (409), and reported the same way.
	mail := email(t, "admin")
	user := "dup-" + strings.Split(mail, "@")[0]
	if _, err := actions.CreateAdmin(ctx(t), c, actions.AdminAccount{Username: user, Email: mail, Password: strongPassword}); err != nil {
		t.Fatal(err)
	}
	_, err = actions.CreateAdmin(ctx(t), c, actions.AdminAccount{Username: user, Email: email(t, "admin2"), Password: strongPassword})
	var ae *actions.APIError
	if !errors.Is(err, actions.ErrConflict) || !errors.As(err, &ae) || ae.StatusCode != 409 {
		t.Fatalf("taken username: got %v, want a conflict from Kratos's 409", err)
	}
}

func TestCreateAdminRefusesBadInputWithoutCalls(t *testing.T) {
	c, cnt := adminClient(t)
	for _, a := range []actions.AdminAccount{
		{Email: "ada@example.com"},
		{Username: "ada", Email: "not-an-email"},
	} {
		if _, err := actions.CreateAdmin(ctx(t), c, a); !errors.Is(err, actions.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", a, err)
		}
	}
	if n := cnt.n.Load(); n != 0 {
		t.Fatalf("invalid input made %d calls", n)
	}
}

// TestKratosErrorBodyIsSurfaced: the error carries Kratos's own message, not only the status.
func TestKratosErrorBodyIsSurfaced(t *testing.T) {
	c, _ := adminClient(t)
	_, err := actions.CreateAdmin(ctx(t), c, actions.AdminAccount{Username: "x", Email: email(t, "admin"), SchemaID: "no-such-schema"})
	var ae *actions.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an APIError", err)
	}
	if ae.StatusCode != 400 || ae.Message == "" || !strings.Contains(err.Error(), ae.Message) {
		t.Fatalf("APIError %+v: want 400 with Kratos's message in %q", ae, err)
	}
	t.Logf("surfaced: %v", err)
}
