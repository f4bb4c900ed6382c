package actions_test

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	client "github.com/ory/kratos-client-go"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
)

func TestRefValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ref  actions.Ref
		ok   bool
	}{
		{"id", actions.Ref{ID: "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"}, true},
		{"email", actions.Ref{Email: "ada@example.com"}, true},
		{"neither", actions.Ref{}, false},
		{"both", actions.Ref{ID: "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51", Email: "ada@example.com"}, false},
		{"id not a uuid", actions.Ref{ID: "ada"}, false},
		{"email without @", actions.Ref{Email: "ada"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ref.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, actions.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

// TestGetIdentityByEmailIsOneCall proves that `identity get --email` is one admin API
// call whatever the number of identities, and measures its latency.
func TestGetIdentityByEmailIsOneCall(t *testing.T) {
	c, cnt := adminClient(t)
	for i := 0; i < 40; i++ {
		createUser(t, c, email(t, "filler"), "")
	}
	want := createUser(t, c, email(t, "target"), "")
	mail := want.Traits.(map[string]interface{})["email"].(string)

	cnt.reset()
	got, err := actions.GetIdentity(ctx(t), c, actions.Ref{Email: strings.ToUpper(mail)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Id != want.Id {
		t.Fatalf("got identity %s, want %s", got.Id, want.Id)
	}
	if n := cnt.n.Load(); n != 1 {
		t.Fatalf("get --email made %d admin API calls (%s), want 1", n, cnt)
	}
	if !strings.Contains(cnt.String(), "credentials_identifier=") {
		t.Fatalf("get --email did not use the credentials-identifier filter: %s", cnt)
	}

	cnt.reset()
	if _, err := actions.GetIdentity(ctx(t), c, actions.Ref{ID: want.Id}); err != nil {
		t.Fatal(err)
	}
	if n := cnt.n.Load(); n != 1 {
		t.Fatalf("get ID made %d calls (%s), want 1", n, cnt)
	}

	const runs = 50
	lat := make([]time.Duration, 0, runs)
	for i := 0; i < runs; i++ {
		start := time.Now()
		if _, err := actions.GetIdentity(ctx(t), c, actions.Ref{Email: mail}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	t.Logf("get --email over %d identities: p50 %s, p95 %s, max %s (%d runs, SQLite)",
		41, lat[runs/2], lat[runs*95/100], lat[runs-1], runs)
}

func TestGetIdentityNotFound(t *testing.T) {
	c, _ := adminClient(t)
	_, err := actions.GetIdentity(ctx(t), c, actions.Ref{Email: email(t, "nobody")})
	var nf *actions.NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("unknown email: got %v, want a NotFoundError", err)
	}
	_, err = actions.GetIdentity(ctx(t), c, actions.Ref{ID: "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"})
	if !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("unknown ID: got %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51") {
		t.Fatalf("error %q does not name the ID", err)
	}
}

// ambiguous creates two identities behind one email: a password identifier (default schema) and
// a code identifier (code schema).
func ambiguous(t *testing.T, c *client.APIClient) (string, []string) {
	t.Helper()
	mail := email(t, "twice")
	a := createUser(t, c, mail, "")
	body := client.NewCreateIdentityBody("code", map[string]interface{}{"email": mail})
	b, _, err := c.IdentityAPI.CreateIdentity(ctx(t)).CreateIdentityBody(*body).Execute()
	if err != nil {
		t.Fatalf("create code-schema identity: %v", err)
	}
	return mail, []string{a.Id, b.Id}
}

func TestAmbiguousEmailIsRefused(t *testing.T) {
	c, cnt := adminClient(t)
	mail, ids := ambiguous(t, c)

	_, err := actions.GetIdentity(ctx(t), c, actions.Ref{Email: mail})
	var ae *actions.AmbiguousError
	if !errors.As(err, &ae) || !errors.Is(err, actions.ErrAmbiguous) {
		t.Fatalf("get: got %v, want an AmbiguousError", err)
	}
	for _, id := range ids {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error %q does not list %s", err, id)
		}
	}

	// Destructive actions refuse, and touch nothing.
	cnt.reset()
	if _, err := actions.DeleteIdentity(ctx(t), c, actions.Ref{Email: mail}); !errors.Is(err, actions.ErrAmbiguous) {
		t.Fatalf("delete: got %v, want ErrAmbiguous", err)
	}
	if _, err := actions.ResetPassword(ctx(t), c, actions.PasswordReset{Ref: actions.Ref{Email: mail}, Password: strongPassword}); !errors.Is(err, actions.ErrAmbiguous) {
		t.Fatalf("reset-password: got %v, want ErrAmbiguous", err)
	}
	if strings.Contains(cnt.String(), "DELETE") || strings.Contains(cnt.String(), "PUT") {
		t.Fatalf("a refused action wrote: %s", cnt)
	}
	for _, id := range ids {
		if _, err := actions.GetIdentity(ctx(t), c, actions.Ref{ID: id}); err != nil {
			t.Fatalf("identity %s gone after a refused delete: %v", id, err)
		}
	}
}

func TestDeleteIdentity(t *testing.T) {
	c, _ := adminClient(t)
	srv := kratos(t)

	byID := email(t, "byid")
	i := createUser(t, c, byID, strongPassword)
	tok := login(t, byID, strongPassword)
	got, err := actions.DeleteIdentity(ctx(t), c, actions.Ref{ID: i.Id})
	if err != nil || got != i.Id {
		t.Fatalf("delete by ID: %q, %v", got, err)
	}
	if _, err := actions.GetIdentity(ctx(t), c, actions.Ref{ID: i.Id}); !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("identity still there after delete: %v", err)
	}
	if err := srv.Whoami(ctx(t), tok); !errors.Is(err, kratostest.ErrUnauthorized) {
		t.Fatalf("session of a deleted identity: whoami = %v, want 401", err)
	}
	if _, err := actions.DeleteIdentity(ctx(t), c, actions.Ref{ID: i.Id}); !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}

	byEmail := email(t, "byemail")
	j := createUser(t, c, byEmail, "")
	got, err = actions.DeleteIdentity(ctx(t), c, actions.Ref{Email: byEmail})
	if err != nil || got != j.Id {
		t.Fatalf("delete by email: %q, %v", got, err)
	}
	if _, err := actions.DeleteIdentity(ctx(t), c, actions.Ref{Email: byEmail}); !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("delete of a gone email: got %v, want ErrNotFound", err)
	}
}

func TestListIdentitiesPaginates(t *testing.T) {
	c, cnt := adminClient(t)
	for i := 0; i < 7; i++ {
		createUser(t, c, email(t, "listed"), "")
	}
	cnt.reset()
	all, err := actions.ListIdentities(ctx(t), c, actions.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := cnt.n.Load(); n != 1 {
		t.Fatalf("default page size: %d calls, want 1 (%s)", n, cnt)
	}
	if len(all) < 7 {
		t.Fatalf("listed %d identities, want at least 7", len(all))
	}

	cnt.reset()
	paged, err := actions.ListIdentities(ctx(t), c, actions.ListOptions{PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls := int64((len(all) + 2) / 3)
	if n := cnt.n.Load(); n != wantCalls {
		t.Fatalf("page size 3 over %d identities: %d calls, want %d (%s)", len(all), n, wantCalls, cnt)
	}
	if !strings.Contains(cnt.String(), "page_token=") {
		t.Fatalf("no page token followed: %s", cnt)
	}
	if ids(paged) != ids(all) {
		t.Fatalf("paged listing differs from the one-page listing:\n%s\n%s", ids(paged), ids(all))
	}

	cnt.reset()
	limited, err := actions.ListIdentities(ctx(t), c, actions.ListOptions{PageSize: 3, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(limited) != 5 || ids(limited) != ids(all[:5]) {
		t.Fatalf("limit 5: got %d identities", len(limited))
	}
	if n := cnt.n.Load(); n != 2 {
		t.Fatalf("limit 5 with page size 3: %d calls, want 2 (%s)", n, cnt)
	}
}

func ids(list []client.Identity) string {
	var b strings.Builder
	for _, i := range list {
		b.WriteString(i.Id)
		b.WriteByte(' ')
	}
	return b.String()
}
