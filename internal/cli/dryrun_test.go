package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/cli"
)

// TestServerDryRunChangesNothing: every mutating command with --dry-run=server checks against
// the real Kratos and says what would change, and afterwards the identity, its password and its
// session are exactly as before.
func TestServerDryRunChangesNothing(t *testing.T) {
	srv := kratos(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	email := mail("dry")
	id, err := srv.Register(ctx, map[string]interface{}{"email": email, "name": "Dry"}, password)
	if err != nil {
		t.Fatal(err)
	}
	token, err := srv.LoginPassword(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	g := []string{"--admin-url", srv.AdminURL}
	before := kk(t, "", append(g, "identity", "get", id, "-o", "json")...).ok(t, "get").stdout

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"identity", "delete", "--email", email}, "identity/" + id + ": would delete the identity and its 2 sessions (server dry run)"},
		{"", []string{"identity", "invalidate-sessions", id}, "identity/" + id + ": would revoke and delete 2 sessions (2 active) (server dry run)"},
		{"New-Password-4-Dry\n", []string{"identity", "reset-password", id, "--password-stdin"}, "would set the password"},
		{"", []string{"identity", "reset-password", "--email", email}, "would issue a recovery link and code valid for 1h0m0s"},
		{"", []string{"identity", "reset-mfa", id, "--type", "totp"}, "identity/" + id + ": no totp credentials: nothing to reset (server dry run)"},
		{"", []string{"identity", "create-admin", "--username", "dry-" + id[:8], "--email", "new-" + email}, `would create an identity with schema admin`},
	} {
		r := kk(t, tc.stdin, append(append(g, tc.args...), "--dry-run=server")...).ok(t, tc.args...)
		if !strings.Contains(r.stdout, tc.want) {
			t.Errorf("%s --dry-run=server printed %q, want %q", strings.Join(tc.args, " "), r.stdout, tc.want)
		}
	}
	// JSON says the same, for scripts.
	r := kk(t, "", append(g, "identity", "delete", id, "--dry-run=server", "-o", "json")...).ok(t, "delete -o json")
	var m map[string]interface{}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m["dryRun"] != "server" || m["action"] != "delete" || m["identity_id"] != id {
		t.Errorf("delete --dry-run=server -o json: %v %s", err, r.stdout)
	}

	// Refusals are the real command's: unknown identity, unlinked account, taken email.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"identity", "delete", "--email", "nobody-" + email}, "no identity"},
		{[]string{"identity", "oidc", "unlink", id, "--credential-id", "github:1"}, "has no linked OIDC account"},
		{[]string{"identity", "create-admin", "--username", "x" + id[:8], "--email", email}, "already a login identifier"},
		{[]string{"identity", "create-admin", "--username", "y" + id[:8], "--email", "y-" + email, "--schema", "nope"}, `identity schema "nope" does not exist`},
	} {
		r := kk(t, "", append(append(g, tc.args...), "--dry-run=server")...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s --dry-run=server: exit %d, %q; want exit 1 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}

	// Nothing changed: the identity is identical, the old password logs in, the session lives,
	// and no admin was created.
	if after := kk(t, "", append(g, "identity", "get", id, "-o", "json")...).ok(t, "get").stdout; after != before {
		t.Errorf("the identity changed after dry runs:\nbefore %s\nafter  %s", before, after)
	}
	if _, err := srv.LoginPassword(ctx, email, password); err != nil {
		t.Errorf("the old password no longer logs in after reset-password --dry-run=server: %v", err)
	}
	if err := srv.Whoami(ctx, token); err != nil {
		t.Errorf("the session was revoked by a dry run: %v", err)
	}
	if r := kk(t, "", append(g, "identity", "get", "--email", "new-"+email)...); r.code != 1 {
		t.Errorf("create-admin --dry-run=server created the account: exit %d %s", r.code, r.stdout)
	}
}

// TestDeleteSeveralNeedsConfirmation: deleting more than one identity is refused without --yes
// when no terminal can ask, asks on a terminal, and a typo among the names deletes nothing.
func TestDeleteSeveralNeedsConfirmation(t *testing.T) {
	srv := kratos(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g := []string{"--admin-url", srv.AdminURL}
	var ids, emails []string
	for i := 0; i < 3; i++ {
		e := mail("multi")
		id, err := srv.Register(ctx, map[string]interface{}{"email": e}, password)
		if err != nil {
			t.Fatal(err)
		}
		ids, emails = append(ids, id), append(emails, e)
	}
	exists := func(id string) bool { return kk(t, "", append(g, "identity", "get", id)...).code == 0 }

	r := kk(t, "", append(g, "identity", "delete", ids[0], "--email", emails[1])...)
	if r.code != 2 || !strings.Contains(r.stderr, "Delete 2 identities and their sessions?: refused without --yes") {
		t.Fatalf("two identities without --yes: exit %d, %q", r.code, r.stderr)
	}
	r = kk(t, "", append(g, "identity", "delete", ids[0], "--email", "typo-"+emails[1], "--yes")...)
	if r.code != 1 {
		t.Fatalf("with an unknown email: exit %d, %q", r.code, r.stderr)
	}
	if !exists(ids[0]) || !exists(ids[1]) {
		t.Fatal("a refused deletion deleted something")
	}

	cli.SetTerminal(t, true)
	r = kk(t, "n\n", append(g, "identity", "delete", ids[0], ids[1])...)
	if r.code != 1 || !strings.Contains(r.stderr, "[y/N]") || !strings.Contains(r.stderr, "not confirmed") || !exists(ids[0]) {
		t.Fatalf("answered n: exit %d, %q", r.code, r.stderr)
	}
	r = kk(t, "y\n", append(g, "identity", "delete", ids[0], "--email", emails[1])...).ok(t, "delete, answered y")
	if strings.Count(r.stdout, " deleted\n") != 2 || exists(ids[0]) || exists(ids[1]) {
		t.Fatalf("answered y: %q", r.stdout)
	}
	cli.SetTerminal(t, false)
	kk(t, "", append(g, "identity", "delete", ids[2], "--yes")...).ok(t, "delete one with --yes")
	if exists(ids[2]) {
		t.Fatal("not deleted")
	}
}
