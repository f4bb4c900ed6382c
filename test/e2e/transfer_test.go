package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	kratos "github.com/ory/kratos-client-go"
	"golang.org/x/crypto/bcrypt"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// transferIdentities is how many identities move from one instance to the other.
const transferIdentities = 10000

// Identities move between two injected instances on two Postgres databases, with the built
// plugin through the API server: 10,000 identities with passwords (bcrypt hashes, as another
// system would hand them over) are imported into the first, exported, imported into the second;
// counts match, a sample of users signs in with their old password through the second
// instance's public API, a second import creates nothing, and export -> import -> export is
// identical but for IDs and timestamps.
func TestIdentityTransferBetweenInstances(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	p := postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ns := namespace(t, s, "transfer")
	for _, name := range []string{"old", "new"} {
		db, err := p.NewDatabase(ctx, "transfer"+name, "")
		if err != nil {
			t.Fatal(err)
		}
		createSecrets(t, ctx, s, ns, map[string]map[string]string{"db-" + name: dbSecret(db, n.IP)})
		dep := deployment(name, 1, map[string]string{injectLabel: "true"}, map[string]string{
			"kratos-injector.io/database-secret": "db-" + name, "kratos-injector.io/migrate": "auto"}, realNodeSpec(n))
		if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
			t.Fatal(err)
		}
	}
	readyPod(t, ctx, s, ns, "app=old")
	newPod := readyPod(t, ctx, s, ns, "app=new")

	// The file another system hands over: traits and a bcrypt hash per user (cost 4, so that
	// making 10,000 takes seconds; Kratos verifies any cost).
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.jsonl")
	start := time.Now()
	if err := writeSeed(seed, transferIdentities); err != nil {
		t.Fatal(err)
	}
	t.Logf("seed file: %d identities with bcrypt hashes in %s", transferIdentities, time.Since(start).Round(time.Millisecond))

	bin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := s.CP.WriteKubeconfig(kubeconfig, "admin"); err != nil {
		t.Fatal(err)
	}
	plugin := func(stdinFile, stdoutFile string, args ...string) (string, time.Duration) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "-n", ns, "--admin-timeout", "2m"}, args...)...)
		if stdinFile != "" {
			f, err := os.Open(stdinFile)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.Stdin = f
		}
		var stdout, stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Stdout = &stdout
		if stdoutFile != "" {
			f, err := os.Create(stdoutFile)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.Stdout = f
		}
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl-kratos %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		took := time.Since(start)
		pluginOutput(args, stdout.String(), stderr.String())
		return stdout.String() + stderr.String(), took
	}

	out, took := plugin("", "", "--instance", "old", "identity", "import", "-f", seed, "--batch", "1000")
	t.Logf("import of the seed into old: %s (%.0f identities/s): %s", took.Round(time.Millisecond), transferIdentities/took.Seconds(), lastLine(out))
	exported := filepath.Join(dir, "old.jsonl")
	_, took = plugin("", exported, "--instance", "old", "identity", "export")
	if got := countLines(t, exported); got != transferIdentities {
		t.Fatalf("export of old: %d identities, want %d", got, transferIdentities)
	}
	t.Logf("export of old: %s (%.0f identities/s)", took.Round(time.Millisecond), transferIdentities/took.Seconds())

	// The plugin at scale (median of 10 runs of the built binary, port-forward included): first
	// with 100 identities on the new instance, then, after the import, with 10,000. get and
	// delete look one identity up (one call, whatever the count); list reads every page.
	small := filepath.Join(dir, "small.jsonl")
	smallEmails := headLines(t, exported, small, 100)
	plugin("", "", "--instance", "new", "identity", "import", "-f", small)
	at100 := pluginAtScale(t, plugin, smallEmails)

	out, took = plugin("", "", "--instance", "new", "identity", "import", "-f", exported, "--batch", "1000")
	t.Logf("import into new: %s (%.0f identities/s): %s", took.Round(time.Millisecond), transferIdentities/took.Seconds(), lastLine(out))
	again := filepath.Join(dir, "new.jsonl")
	plugin("", again, "--instance", "new", "identity", "export")
	if got := countLines(t, again); got != transferIdentities {
		t.Fatalf("export of new: %d identities, want %d", got, transferIdentities)
	}
	a, b := normalizedExport(t, exported), normalizedExport(t, again)
	if !reflect.DeepEqual(a, b) {
		for k, v := range a {
			if !reflect.DeepEqual(v, b[k]) {
				t.Fatalf("export -> import -> export differs for %s:\n%v\n%v", k, v, b[k])
			}
		}
		t.Fatalf("export -> import -> export differs (%d vs %d identities)", len(a), len(b))
	}

	// Rerun: everything is skipped, nothing is created twice.
	out, took = plugin("", "", "--instance", "new", "identity", "import", "-f", exported, "--batch", "1000")
	t.Logf("second import into new: %s: %s", took.Round(time.Millisecond), lastLine(out))
	plugin("", again, "--instance", "new", "identity", "export")
	if got := countLines(t, again); got != transferIdentities {
		t.Fatalf("after a second import: %d identities, want %d", got, transferIdentities)
	}

	// Measured after the export comparison (it deletes 10 identities).
	var lateEmails []string
	for i := transferIdentities - 20; i < transferIdentities; i++ {
		email, _ := seedUser(i)
		lateEmails = append(lateEmails, email)
	}
	at10k := pluginAtScale(t, plugin, lateEmails)
	t.Logf("the plugin at scale, median of 10 runs (get --email | delete --email | list, all pages):")
	t.Logf("  %6d identities: %s | %s | %s", 100, at100[0], at100[1], at100[2])
	t.Logf("  %6d identities: %s | %s | %s", transferIdentities, at10k[0], at10k[1], at10k[2])

	// A sample of users signs in on the new instance with the password they had.
	fw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, newPod, config.PublicPort)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	public := kratosClient(fw.URL)
	for _, i := range []int{0, 1, 4999, transferIdentities - 21} {
		email, password := seedUser(i)
		if err := passwordLogin(ctx, public, email, password); err != nil {
			t.Errorf("%s cannot sign in on the new instance with the old password: %v", email, err)
		}
		if err := passwordLogin(ctx, public, email, password+"x"); err == nil {
			t.Errorf("%s signs in with a wrong password", email)
		}
	}
}

func seedUser(i int) (email, password string) {
	return fmt.Sprintf("user-%05d@transfer.example", i), fmt.Sprintf("Transfer-Pa55-%05d", i)
}

// writeSeed writes n identities in Kratos's import format, each with a bcrypt hash.
func writeSeed(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range n {
		email, password := seedUser(i)
		hash, err := bcryptHash(password)
		if err != nil {
			return err
		}
		if err := enc.Encode(map[string]any{
			"schema_id": "default", "traits": map[string]any{"email": email},
			"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": hash}}},
		}); err != nil {
			return err
		}
	}
	return w.Flush()
}

// passwordLogin signs in through the public API's native login flow.
func passwordLogin(ctx context.Context, public *kratos.APIClient, email, password string) error {
	flow, _, err := public.FrontendAPI.CreateNativeLoginFlow(ctx).Execute()
	if err != nil {
		return err
	}
	body := kratos.UpdateLoginFlowWithPasswordMethodAsUpdateLoginFlowBody(&kratos.UpdateLoginFlowWithPasswordMethod{
		Method: "password", Identifier: email, Password: password})
	res, _, err := public.FrontendAPI.UpdateLoginFlow(ctx).Flow(flow.Id).UpdateLoginFlowBody(body).Execute()
	if err != nil {
		return err
	}
	if res.Session.Identity == nil || res.Session.Identity.Traits.(map[string]any)["email"] != email {
		return fmt.Errorf("signed in as another identity")
	}
	return nil
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// normalizedExport maps each identity's email to its export without what differs between two
// instances by design: IDs, timestamps and URLs.
func normalizedExport(t *testing.T, path string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]any{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		email, _ := v["traits"].(map[string]any)["email"].(string)
		out[email] = strip(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// strip removes ids, timestamps and URLs at every level, and sorts lists of objects.
func strip(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			switch k {
			case "id", "identity_id", "created_at", "updated_at", "state_changed_at", "schema_url":
				continue
			}
			m[k] = strip(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = strip(e)
		}
		sort.Slice(l, func(i, j int) bool { return fmt.Sprint(l[i]) < fmt.Sprint(l[j]) })
		return l
	}
	return v
}

// bcryptHash is a bcrypt hash at the lowest cost.
func bcryptHash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	return string(h), err
}

// headLines copies the first n lines of src to dst and returns their emails.
func headLines(t *testing.T, src, dst string, n int) []string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfterN(string(b), "\n", n+1)[:n]
	if err := os.WriteFile(dst, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	var emails []string
	for _, l := range lines {
		var v struct {
			Traits struct {
				Email string `json:"email"`
			} `json:"traits"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		emails = append(emails, v.Traits.Email)
	}
	return emails
}

// pluginAtScale times, on the new instance, 10 runs each of identity get --email (emails[0..9]),
// identity delete --email --yes (emails[10..19]) and identity list (every page), and returns
// their medians.
func pluginAtScale(t *testing.T, plugin func(string, string, ...string) (string, time.Duration), emails []string) [3]time.Duration {
	t.Helper()
	var runs [3][]time.Duration
	for i := range 10 {
		out, took := plugin("", "", "--instance", "new", "identity", "get", "--email", emails[i], "-o", "name")
		if !strings.HasPrefix(strings.TrimSpace(out), "identity.kratos-injector.io/") {
			t.Fatalf("get --email %s: %q", emails[i], out)
		}
		runs[0] = append(runs[0], took)
		_, took = plugin("", "", "--instance", "new", "identity", "delete", "--email", emails[10+i], "--yes")
		runs[1] = append(runs[1], took)
		_, took = plugin("", "", "--instance", "new", "identity", "list", "-o", "name")
		runs[2] = append(runs[2], took)
	}
	var med [3]time.Duration
	for k := range runs {
		slices.Sort(runs[k])
		med[k] = ((runs[k][4] + runs[k][5]) / 2).Round(time.Millisecond)
	}
	return med
}
