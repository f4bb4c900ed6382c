package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/instance/clustertest"
)

// transferN is the number of identities TestExportImport moves; KRATOSTEST_TRANSFER_N sets
// another (the figures in the README were measured with 10000).
func transferN(t *testing.T) int {
	if s := os.Getenv("KRATOSTEST_TRANSFER_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("KRATOSTEST_TRANSFER_N=%q: want a number >= 10", s)
		}
		return n
	}
	return 300
}

func transferPassword(i int) string { return fmt.Sprintf("Old-Password-%d-Transfer", i) }

// seed creates n identities in the Kratos at adminURL through the batch endpoint directly (not
// through the plugin): passwords (hashed by Kratos), metadata and verified addresses on some,
// one identity whose password is an imported PBKDF2 hash, one linked to a GitHub account only.
func seed(t *testing.T, adminURL string, n int) {
	t.Helper()
	var creates []map[string]interface{}
	for i := 0; i < n; i++ {
		c := map[string]interface{}{
			"schema_id": "default",
			"traits":    map[string]interface{}{"email": fmt.Sprintf("user-%05d@transfer.test", i), "name": fmt.Sprintf("User %d", i)},
			"credentials": map[string]interface{}{"password": map[string]interface{}{
				"config": map[string]interface{}{"password": transferPassword(i)}}},
		}
		if i%10 == 0 {
			c["metadata_public"] = map[string]interface{}{"n": i}
			c["metadata_admin"] = map[string]interface{}{"tier": "gold"}
			c["verifiable_addresses"] = []map[string]interface{}{{"value": fmt.Sprintf("user-%05d@transfer.test", i), "via": "email", "verified": true, "status": "completed"}}
		}
		if i == 3 {
			c["state"] = "inactive"
		}
		creates = append(creates, c)
	}
	salt := []byte("transfer-salt-16")
	key, err := pbkdf2.Key(sha256.New, "Pbkdf2-Password-Transfer", salt, 1000, 32)
	if err != nil {
		t.Fatal(err)
	}
	hash := fmt.Sprintf("$pbkdf2-sha256$i=1000,l=32$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	creates = append(creates,
		map[string]interface{}{"schema_id": "default", "traits": map[string]interface{}{"email": "pbkdf2@transfer.test"},
			"credentials": map[string]interface{}{"password": map[string]interface{}{"config": map[string]interface{}{"hashed_password": hash}}}},
		map[string]interface{}{"schema_id": "default", "traits": map[string]interface{}{"email": "social@transfer.test"},
			"credentials": map[string]interface{}{"oidc": map[string]interface{}{"config": map[string]interface{}{
				"providers": []map[string]interface{}{{"provider": "github", "subject": "4242"}}}}}},
	)
	for start := 0; start < len(creates); start += 1000 {
		var patches []map[string]interface{}
		for _, c := range creates[start:min(start+1000, len(creates))] {
			patches = append(patches, map[string]interface{}{"create": c})
		}
		b, _ := json.Marshal(map[string]interface{}{"identities": patches})
		req, _ := http.NewRequest(http.MethodPatch, adminURL+"/admin/identities", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Identities []struct {
				Action string          `json:"action"`
				Error  json.RawMessage `json:"error"`
			} `json:"identities"`
		}
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("seed: %s, %v", resp.Status, err)
		}
		for _, r := range res.Identities {
			if r.Action != "create" {
				t.Fatalf("seed: %s %s", r.Action, r.Error)
			}
		}
	}
}

// normalized is an export's lines without what Kratos sets itself (IDs, timestamps, the
// schema URL that names the instance's host), keyed by email, as JSON.
func normalized(t *testing.T, export string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(export))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]interface{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("export line not JSON: %v: %s", err, sc.Text())
		}
		for _, k := range []string{"id", "created_at", "updated_at", "state_changed_at", "schema_url"} {
			delete(m, k)
		}
		for _, list := range []string{"verifiable_addresses", "recovery_addresses"} {
			as, _ := m[list].([]interface{})
			for _, a := range as {
				for _, k := range []string{"id", "created_at", "updated_at", "identity_id"} {
					delete(a.(map[string]interface{}), k)
				}
			}
		}
		creds, _ := m["credentials"].(map[string]interface{})
		for _, c := range creds {
			for _, k := range []string{"created_at", "updated_at"} {
				delete(c.(map[string]interface{}), k)
			}
		}
		b, _ := json.Marshal(m)
		email := m["traits"].(map[string]interface{})["email"].(string)
		if _, dup := out[email]; dup {
			t.Fatalf("two identities with email %s in the export", email)
		}
		out[email] = string(b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportImport moves identities from one real Kratos to another through the plugin: every
// identity arrives, export -> import -> export is identical but for IDs and timestamps, users
// sign in on the second Kratos with their old passwords (bcrypt made by Kratos, an imported
// PBKDF2 hash), the OIDC link and verified addresses survive, and importing the file again
// creates nothing.
func TestExportImport(t *testing.T) {
	n := transferN(t)
	src, err := kratostest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Stop()
	dst, err := kratostest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Stop()
	seedStart := time.Now()
	seed(t, src.AdminURL, n)
	t.Logf("seeded %d identities in %s", n+2, time.Since(seedStart).Round(time.Millisecond))

	r := kk(t, "", "--admin-url", src.AdminURL, "identity", "export", "--page-size", "1000").ok(t, "export")
	exported := r.stdout
	if got := strings.Count(exported, "\n"); got != n+2 {
		t.Fatalf("export wrote %d lines, want %d", got, n+2)
	}
	t.Logf("export: %s", strings.TrimSpace(r.stderr))
	if strings.Contains(exported, "initial_access_token") || strings.Contains(exported, `"password":"Old-`) {
		t.Fatal("the export holds OIDC tokens or a clear password")
	}
	if !strings.Contains(exported, `"hashed_password":"$2a$04$`) || !strings.Contains(exported, `"hashed_password":"$pbkdf2-sha256$`) {
		t.Fatal("the export lacks the password hashes")
	}
	file := filepath.Join(t.TempDir(), "identities.jsonl")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}

	r = kk(t, "", "--admin-url", dst.AdminURL, "identity", "import", "-f", file, "--batch", "1000").ok(t, "import")
	if want := fmt.Sprintf("%d identities, %d created, 0 skipped (identifier taken), 0 failed", n+2, n+2); !strings.Contains(r.stdout, want) {
		t.Fatalf("import printed %q, want %q (stderr %q)", r.stdout, want, r.stderr)
	}
	t.Logf("import: %s", strings.TrimSpace(r.stdout))

	r = kk(t, "", "--admin-url", dst.AdminURL, "identity", "export").ok(t, "export of the copy")
	before, after := normalized(t, exported), normalized(t, r.stdout)
	if len(before) != n+2 || len(after) != n+2 {
		t.Fatalf("counts: %d exported, %d on the second Kratos; want %d", len(before), len(after), n+2)
	}
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("export -> import -> export differs (-first +second):\n%.3000s", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, i := range []int{0, 7, n - 1} {
		if _, err := dst.LoginPassword(ctx, fmt.Sprintf("user-%05d@transfer.test", i), transferPassword(i)); err != nil {
			t.Errorf("user %d cannot sign in on the second Kratos with the old password: %v", i, err)
		}
	}
	if _, err := dst.LoginPassword(ctx, "pbkdf2@transfer.test", "Pbkdf2-Password-Transfer"); err != nil {
		t.Errorf("the imported PBKDF2 hash does not sign in on the second Kratos: %v", err)
	}
	if _, err := dst.LoginPassword(ctx, "user-00001@transfer.test", "wrong-password"); err == nil {
		t.Error("a wrong password signs in: the check proves nothing")
	}
	// The social account has no login identifier: it is found in the copy's export.
	if !strings.Contains(after["social@transfer.test"], `"providers":[{"provider":"github","subject":"4242"}]`) {
		t.Errorf("the OIDC link did not survive: %s", after["social@transfer.test"])
	}
	if !strings.Contains(after["user-00010@transfer.test"], `"verified":true`) || !strings.Contains(after["user-00010@transfer.test"], `"tier":"gold"`) {
		t.Errorf("verified address or admin metadata lost: %s", after["user-00010@transfer.test"])
	}

	// Again: idempotent, everything skipped, nothing created.
	r = kk(t, "", "--admin-url", dst.AdminURL, "identity", "import", "-f", file).ok(t, "import again")
	if want := fmt.Sprintf("0 created, %d skipped (identifier taken), 0 failed", n+2); !strings.Contains(r.stdout, want) {
		t.Fatalf("import again printed %q, want %q", r.stdout, want)
	}
	t.Logf("import again: %s", strings.TrimSpace(r.stdout))
	r = kk(t, "", "--admin-url", dst.AdminURL, "identity", "list", "-o", "name").ok(t, "list")
	if got := strings.Count(r.stdout, "\n"); got != n+2 {
		t.Fatalf("%d identities on the second Kratos after importing twice, want %d", got, n+2)
	}
}

// TestImportFailures: a line that is not JSON, an identity Kratos refuses (its email is not an
// email) and a duplicate in the file are named by line and the others are created; --fail-fast
// stops at the first; --on-conflict fail counts the duplicate as a failure.
func TestImportFailures(t *testing.T) {
	srv := kratos(t)
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	line := func(email string) string {
		return fmt.Sprintf(`{"schema_id":"default","traits":{"email":%q},"credentials":{"password":{"config":{"password":"Pw-%s-Import-Fail"}}}}`, email, tag)
	}
	a, b := "a-"+tag+"@import.test", "b-"+tag+"@import.test"
	file := filepath.Join(t.TempDir(), "in.jsonl")
	content := strings.Join([]string{line(a), "not json", line("not-an-email-" + tag), "", line(a), line(b)}, "\n") + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	g := []string{"--admin-url", srv.AdminURL, "identity", "import", "-f", file}
	count := func() int {
		return strings.Count(kk(t, "", "--admin-url", srv.AdminURL, "identity", "list", "-o", "name").ok(t, "list").stdout, "\n")
	}
	before := count()

	// Dry runs first: the file's problems, nothing created. The client one contacts nothing
	// (--admin-url points nowhere).
	r := kk(t, "", "--admin-url", "http://"+clustertest.ClosedAddr(t), "identity", "import", "-f", file, "--dry-run")
	if r.code != 1 || !strings.Contains(r.stdout, "5 identities, 3 would be created, 1 skipped (identifier taken), 1 failed (dry run)") ||
		!strings.Contains(r.stderr, "error: line 2: not an identity in JSON") {
		t.Fatalf("--dry-run=client: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	r = kk(t, "", append(g, "--dry-run=server", "--on-conflict", "fail")...)
	if r.code != 1 || !strings.Contains(r.stdout, "5 identities, 3 would be created, 0 skipped (identifier taken), 2 failed (server dry run)") ||
		!strings.Contains(r.stderr, "error: line 5 (a-"+tag+"@import.test): line 1 has this identifier already") {
		t.Fatalf("--dry-run=server: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	if after := count(); after != before {
		t.Fatalf("dry runs created identities: %d -> %d", before, after)
	}

	r = kk(t, "", append(g, "--fail-fast")...)
	if r.code != 1 || !strings.Contains(r.stderr, "error: line 2: not an identity in JSON") || strings.Contains(r.stderr, "line 3") ||
		!strings.Contains(r.stdout, "2 identities, 1 created, 0 skipped (identifier taken), 1 failed") {
		t.Fatalf("--fail-fast: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	r = kk(t, "", g...)
	if r.code != 1 || !strings.Contains(r.stderr, "error: line 2: not an identity in JSON") ||
		!strings.Contains(r.stderr, "error: line 3 (not-an-email-"+tag+"): ") ||
		!strings.Contains(r.stdout, "5 identities, 1 created, 2 skipped (identifier taken), 2 failed") {
		t.Fatalf("without --fail-fast: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	r = kk(t, "", append(g, "--on-conflict", "fail", "-o", "json")...)
	var res struct {
		Created, Skipped, Failed int
		Failures                 []struct {
			Line     int  `json:"line"`
			Conflict bool `json:"conflict"`
		} `json:"failures"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 1 || res.Created != 0 || res.Failed != 5 || len(res.Failures) != 5 {
		t.Fatalf("--on-conflict fail -o json: exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	lines := []int{}
	for _, f := range res.Failures {
		lines = append(lines, f.Line)
	}
	sort.Ints(lines)
	if fmt.Sprint(lines) != "[1 2 3 5 6]" {
		t.Errorf("failed lines %v, want [1 2 3 5 6]", lines)
	}

	// A server dry run now sees the identifiers taken.
	r = kk(t, "", append(g, "--dry-run=server")...)
	if !strings.Contains(r.stdout, "5 identities, 1 would be created, 3 skipped (identifier taken), 1 failed (server dry run)") {
		t.Errorf("--dry-run=server after the import: %q %q", r.stdout, r.stderr)
	}

	// On a terminal, a progress bar over the file's lines, cleared before each message and at
	// the end.
	cli.SetTerminal(t, true)
	r = kk(t, "", g...)
	if !regexp.MustCompile(`\r\[=* *\] +\d+% \d+/6: \d+ created, \d+ skipped, \d+ failed`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "\r\x1b[K") || !strings.Contains(r.stderr, "error: line 2: ") {
		t.Errorf("no progress bar on a terminal: %q", r.stderr)
	}
}
