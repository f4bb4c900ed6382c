package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// complete runs cobra's __complete as kubectl's plugin completion does (through
// kubectl_complete-kratos) and returns the candidates, without the directive line.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	r := kk(t, "", append([]string{"__complete"}, args...)...).ok(t, append([]string{"__complete"}, args...)...)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") {
			out = append(out, l)
		}
	}
	return out
}

func hasCandidate(got []string, want string) bool {
	for _, g := range got {
		if g == want || strings.HasPrefix(g, want+"\t") {
			return true
		}
	}
	return false
}

// TestCompletion: verbs, flags and their values, instance names from the cluster, identity IDs
// and emails from the instance's Kratos (through the port-forward, as bob, who may only list
// pods and port-forward), and the linked OIDC accounts... for an identity without any, none.
func TestCompletion(t *testing.T) {
	ns, _ := readyInstance(t)
	operator(t, ns, "bob")
	g := []string{"--kubeconfig", cluster.Kubeconfig(t, "bob", ns)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	email := mail("tab")
	id, err := kratos(t).Register(ctx, map[string]interface{}{"email": email}, password)
	if err != nil {
		t.Fatal(err)
	}
	with := func(args ...string) []string { return append(append([]string{}, g...), args...) }

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{""}, []string{"identity", "migrate", "status", "inject", "version"}},
		{[]string{"identity", ""}, []string{"get", "list", "delete", "reset-mfa", "oidc"}},
		{[]string{"identity", "reset-mfa", id, "--type", ""}, []string{"totp", "lookup_secret", "webauthn"}},
		{[]string{"identity", "list", "-o", ""}, []string{"json", "yaml", "wide", "name", "jsonpath=", "custom-columns="}},
		{[]string{"identity", "delete", "--dry"}, []string{"--dry-run"}},
		{with("identity", "get", "--instance", ""), []string{"web"}},
		{with("identity", "get", ""), []string{id + "\t" + email}},
		{with("identity", "get", id[:6]), []string{id}},
		{with("identity", "delete", "--email", ""), []string{email + "\t" + id}},
		{with("identity", "invalidate-sessions", "--email", email[:8]), []string{email}},
	} {
		got := complete(t, tc.args...)
		for _, w := range tc.want {
			if !hasCandidate(got, w) {
				t.Errorf("__complete %q: no candidate %q in %q", tc.args, w, got)
			}
		}
	}
	// One identity argument is enough for get; delete takes more, but not the same twice.
	if got := complete(t, with("identity", "get", id, "")...); len(got) != 0 {
		t.Errorf("a second ID offered to get: %q", got)
	}
	if got := complete(t, with("identity", "delete", id, "")...); hasCandidate(got, id) {
		t.Errorf("delete offers %s again: %q", id, got)
	}
	if got := complete(t, with("identity", "oidc", "unlink", id, "--credential-id", "")...); len(got) != 0 {
		t.Errorf("OIDC accounts offered for an identity without any: %q", got)
	}
	// Without a cluster: no candidate, no error.
	if got := complete(t, "--kubeconfig", "/nonexistent", "identity", "get", "--instance", ""); len(got) != 0 {
		t.Errorf("candidates without a cluster: %q", got)
	}
}

// TestCompletionScript: the script shipped for kubectl runs the plugin's __complete with the
// words kubectl gives it, unchanged.
func TestCompletionScript(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"
	if err := os.WriteFile(filepath.Join(dir, "kubectl-kratos"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("../../plugins/kubectl_complete-kratos", "identity", "get", "--email", "a b", "")
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if want := "[__complete][identity][get][--email][a b][]"; err != nil || string(out) != want {
		t.Fatalf("kubectl_complete-kratos: %v, %q; want %q", err, out, want)
	}
}
