package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestObjectOutputFormats: identity get, list and oidc list print through kubectl's printers:
// -o name, jsonpath, go-template, custom-columns (inline and from a file), --no-headers, and
// refuse a bad template as a usage error.
func TestObjectOutputFormats(t *testing.T) {
	srv := kratos(t)
	email := mail("fmt")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := srv.Register(ctx, map[string]interface{}{"email": email, "name": "Grace"}, password)
	if err != nil {
		t.Fatal(err)
	}
	g := []string{"--admin-url", srv.AdminURL}
	run := func(args ...string) string {
		t.Helper()
		return kk(t, "", append(g, args...)...).ok(t, args...).stdout
	}

	if got, want := run("identity", "get", id, "-o", "name"), "identity.kratos-injector.io/"+id+"\n"; got != want {
		t.Errorf("get -o name: %q, want %q", got, want)
	}
	if got := run("identity", "list", "-o", "name"); !strings.Contains(got, "identity.kratos-injector.io/"+id+"\n") {
		t.Errorf("list -o name does not name %s:\n%s", id, got)
	}
	if got := run("identity", "get", "--email", email, "-o", "jsonpath={.traits.email} {.kind} {.apiVersion} {.metadata.name}"); got != email+" Identity kratos-injector.io/v1alpha1 "+id {
		t.Errorf("get -o jsonpath: %q", got)
	}
	if got := run("identity", "get", id, "-o", "go-template={{.state}}/{{.schema_id}}"); got != "active/default" {
		t.Errorf("get -o go-template: %q", got)
	}
	if got := run("identity", "get", id, "--template", "{{.traits.name}}"); got != "Grace" {
		t.Errorf("get --template (go-template without -o, as kubectl): %q", got)
	}
	got := run("identity", "get", id, "-o", "custom-columns=ID:.id,EMAIL:{.traits.email},MISSING:.nope")
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID EMAIL MISSING" ||
		strings.Join(strings.Fields(lines[1]), " ") != id+" "+email+" <none>" {
		t.Errorf("get -o custom-columns:\n%s", got)
	}
	got = run("identity", "get", id, "-o", "custom-columns=ID:.id", "--no-headers")
	if strings.TrimSpace(got) != id {
		t.Errorf("custom-columns --no-headers: %q", got)
	}
	file := filepath.Join(t.TempDir(), "cols")
	if err := os.WriteFile(file, []byte("ID   STATE\n.id  .state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got = run("identity", "list", "-o", "custom-columns-file="+file)
	if !strings.HasPrefix(got, "ID ") || !strings.Contains(got, id) {
		t.Errorf("list -o custom-columns-file:\n%s", got)
	}
	got = run("identity", "list", "--no-headers")
	if strings.HasPrefix(got, "ID") || !strings.Contains(got, id) {
		t.Errorf("list --no-headers:\n%s", got)
	}
	// OIDC accounts are objects too: an identity without any is an empty List.
	if got := run("identity", "oidc", "list", id, "-o", "jsonpath={.kind} {.items}"); got != "List []" {
		t.Errorf("oidc list -o jsonpath: %q", got)
	}

	for _, bad := range [][]string{
		{"identity", "get", id, "-o", "jsonpath={.traits"},
		{"identity", "get", id, "-o", "go-template={{.traits"},
		{"identity", "list", "-o", "custom-columns=ID"},
		{"identity", "list", "-o", "xml"},
	} {
		r := kk(t, "", append(g, bad...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "-o ") {
			t.Errorf("%s: exit %d, %q; want a usage error about -o", strings.Join(bad, " "), r.code, r.stderr)
		}
	}
}
