package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	client "github.com/ory/kratos-client-go"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// TestPluginOnRealNode is issue 6: the built kubectl-kratos binary, against Deployments injected
// by the running webhook and running on the real node (real Kratos on the bed's Postgres), through the API server's real
// port-forward and exec into the kubelet, runs every command; each effect is checked through
// Kratos's own APIs (the admin API, and the self-service API as an end user) on port-forwards of
// the test's own.
//
// Two instances share the namespace: "web" (migrate auto, Ready) and "accounts" (migrate manual
// on a fresh database: running, unready until `kubectl kratos migrate`).
func TestPluginOnRealNode(t *testing.T) {
	s, n := node(t)
	webhook(t) // the injector, registered with the API server
	pg := postgres(t)
	bin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	ns := namespace(t, s, "plugin")
	cs := s.CP.Client

	// The instances' databases, their Secrets (discrete keys, host = the bridge
	// address where pods reach Postgres), an OIDC provider Secret, passwords.
	webDB, err := pg.NewDatabase(ctx, "plugin_web", "")
	if err != nil {
		t.Fatal(err)
	}
	accountsDB, err := pg.NewDatabase(ctx, "plugin_accounts", "")
	if err != nil {
		t.Fatal(err)
	}
	const pw1, pw2 = "first-Secret-pass-8531", "second-Secret-pass-1947"
	for name, data := range map[string]map[string]string{
		"web-db":             dbSecret(webDB, n.IP),
		"accounts-db":        dbSecret(accountsDB, n.IP),
		"github-idp":         {"provider": "github", "id": "github", "client_id": "plugin-e2e-client", "client_secret": "plugin-e2e-secret"},
		"new-admin-password": {"password": pw2 + "\n"},
	} {
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}, createOpts); err != nil {
			t.Fatal(err)
		}
	}
	const ui = "http://127.0.0.1:4455" // a login UI nothing serves: only recovery links point there
	start := time.Now()
	pluginDeploy(t, ctx, s, ns, "web", n.Name, map[string]string{
		inject.AnnotationDatabaseSecret: "web-db",
		inject.AnnotationMigrate:        "auto",
		inject.AnnotationFeatures:       "local-idp,mfa,recovery",
		inject.AnnotationIDPSecrets:     "github-idp",
		inject.AnnotationUIURL:          ui,
	})
	pluginDeploy(t, ctx, s, ns, "accounts", n.Name, map[string]string{
		inject.AnnotationDatabaseSecret: "accounts-db",
		inject.AnnotationMigrate:        "manual",
	})
	web := pluginWaitPod(t, s, ns, "web", 4*time.Minute, "Ready", instance.IsReady)
	t.Logf("instance web Ready in %s (pod %s)", time.Since(start).Round(time.Millisecond), web.Name)
	accounts := pluginWaitPod(t, s, ns, "accounts", 2*time.Minute, "with Kratos running", func(p *corev1.Pod) bool {
		st := instance.ContainerStatus(p, inject.ContainerKratos)
		return st != nil && st.State.Running != nil
	})
	if instance.IsReady(accounts) {
		t.Fatalf("pod %s of instance accounts is Ready before its database is migrated", accounts.Name)
	}

	// Kubeconfigs: the admin; alice may only list pods; bob may list pods and port-forward.
	dir := t.TempDir()
	kc := func(user string) string {
		p := filepath.Join(dir, user+".kubeconfig")
		if err := s.CP.WriteKubeconfig(p, user); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pluginGrant(t, ctx, s, ns, "alice", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}})
	pluginGrant(t, ctx, s, ns, "bob",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}})
	admin := &pluginCLI{bin: bin, args: []string{"--kubeconfig", kc("admin"), "-n", ns}}
	webCLI := admin.with("--instance", "web")

	// What the test checks with: the admin API and the public (self-service) API of instance web,
	// on port-forwards of its own.
	adminFw, err := instance.PortForward(ctx, s.CP.Config, cs, web, 4434)
	if err != nil {
		t.Fatal(err)
	}
	defer adminFw.Close()
	publicFw, err := instance.PortForward(ctx, s.CP.Config, cs, web, 4433)
	if err != nil {
		t.Fatal(err)
	}
	defer publicFw.Close()
	api, err := actions.NewClient(adminFw.URL, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// An end user of the self-service API: the flows' action URLs are on Kratos's base URL
	// (http://127.0.0.1:4433/, the default public-url), which this client dials through the
	// port-forward.
	user := &kratostest.Server{PublicURL: pluginPublicBase, HTTPClient: pluginThrough(publicFw)}
	getIdentity := func(id string) (*client.Identity, int) {
		i, resp, err := api.IdentityAPI.GetIdentity(ctx, id).IncludeCredential([]string{"password", "totp", "oidc"}).Execute()
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		if err != nil && code != http.StatusNotFound {
			t.Fatalf("admin API: get identity %s: %v", id, err)
		}
		return i, code
	}

	t.Run("several instances need --instance", func(t *testing.T) {
		r := admin.run(t, "", "identity", "list")
		want := fmt.Sprintf("several Kratos instances in namespace %s (accounts, web): pick one with --instance NAME", ns)
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("without --instance: exit %d, %q; want 1 and %q", r.code, r.stderr, want)
		}
		r = admin.with("-l", "app=accounts").run(t, "", "identity", "list")
		if r.code != 1 || !strings.Contains(r.stderr, instance.ReasonNotMigrated) {
			t.Fatalf("-l app=accounts (not migrated): exit %d, %q", r.code, r.stderr)
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		alice := &pluginCLI{bin: bin, args: []string{"--kubeconfig", kc("alice"), "-n", ns, "--instance", "web"}}
		r := alice.run(t, "", "identity", "list")
		want := fmt.Sprintf(`you need "create" on "pods/portforward" in namespace %s`, ns)
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("alice without pods/portforward: exit %d, %q; want 1 and %q", r.code, r.stderr, want)
		}
		t.Logf("%s", strings.TrimSpace(r.stderr))
		r = alice.with("--instance", "accounts").run(t, "", "migrate")
		if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf(`you need "create" on "pods/exec" in namespace %s`, ns)) {
			t.Fatalf("alice without pods/exec: exit %d, %q", r.code, r.stderr)
		}
		bob := &pluginCLI{bin: bin, args: []string{"--kubeconfig", kc("bob"), "-n", ns, "--instance", "web"}}
		r = bob.run(t, "", "identity", "list", "-o", "json").ok(t)
		r = bob.run(t, "", "identity", "reset-password", "--email", "nobody@example.test", "--password-secret", "new-admin-password")
		if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf(`you need "get" on "secrets" in namespace %s`, ns)) {
			t.Fatalf("bob without secrets: exit %d, %q", r.code, r.stderr)
		}
	})

	email := "ada.plugin@example.test"
	var id, token1 string
	t.Run("create-admin with a password, get, list", func(t *testing.T) {
		r := webCLI.run(t, pw1+"\n", "identity", "create-admin", "--username", "ada", "--email", email, "--name", "Ada Lovelace", "--password-stdin").ok(t)
		m := regexp.MustCompile(`^identity/([0-9a-f-]{36}) created`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("create-admin printed %q", r.stdout)
		}
		id = m[1]
		i, code := getIdentity(id)
		traits, _ := i.Traits.(map[string]interface{})
		if code != http.StatusOK || i.SchemaId != "admin" || traits["email"] != email || traits["username"] != "ada" || traits["name"] != "Ada Lovelace" {
			t.Fatalf("admin API: identity %s: HTTP %d, schema %q, traits %v", id, code, i.SchemaId, traits)
		}
		if token1, err = user.LoginPassword(ctx, "ada", pw1); err != nil {
			t.Fatalf("the password given on stdin does not log in: %v", err)
		}

		r = webCLI.run(t, "", "identity", "get", "--email", strings.ToUpper(email), "-o", "json").ok(t)
		var got struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ID != id {
			t.Fatalf("get --email: %v, %q", err, r.stdout)
		}
		r = webCLI.run(t, "", "identity", "get", id).ok(t)
		if !strings.Contains(r.stdout, email) {
			t.Fatalf("get ID:\n%s", r.stdout)
		}
		r = webCLI.run(t, "", "identity", "list", "-o", "json").ok(t)
		if !strings.Contains(r.stdout, id) {
			t.Fatalf("list does not show %s:\n%s", id, r.stdout)
		}
		// The same address again is refused, naming the identity that has it.
		r = webCLI.run(t, "", "identity", "create-admin", "--username", "ada2", "--email", email)
		if r.code != 1 || !strings.Contains(r.stderr, id) {
			t.Fatalf("duplicate: exit %d, %q", r.code, r.stderr)
		}
	})
	if id == "" {
		t.FailNow()
	}

	var token2 string
	t.Run("reset-password from a Secret", func(t *testing.T) {
		r := webCLI.run(t, "", "identity", "reset-password", "--email", email, "--password-secret", "new-admin-password").ok(t)
		if strings.TrimSpace(r.stdout) != "password of identity/"+id+" set" {
			t.Fatalf("reset-password printed %q", r.stdout)
		}
		if token2, err = user.LoginPassword(ctx, email, pw2); err != nil {
			t.Fatalf("the new password does not log in: %v", err)
		}
		_, err := user.LoginPassword(ctx, email, pw1)
		var he *kratostest.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
			t.Fatalf("the old password: want a 400 refusal, got %v", err)
		}
	})

	t.Run("invalidate-sessions", func(t *testing.T) {
		if err := user.Whoami(ctx, token2); err != nil {
			t.Fatalf("before: whoami: %v", err)
		}
		r := webCLI.run(t, "", "identity", "invalidate-sessions", "--email", email).ok(t)
		if !strings.Contains(r.stdout, "sessions of identity/"+id+" revoked") {
			t.Fatalf("invalidate-sessions printed %q", r.stdout)
		}
		for _, tok := range []string{token1, token2} {
			if err := user.Whoami(ctx, tok); !errors.Is(err, kratostest.ErrUnauthorized) {
				t.Fatalf("after: whoami: %v, want 401", err)
			}
		}
	})

	t.Run("reset-password without a password: the recovery code works", func(t *testing.T) {
		r := webCLI.run(t, "", "identity", "reset-password", id, "-o", "json").ok(t)
		var res struct {
			Recovery struct {
				Link string `json:"recovery_link"`
				Code string `json:"recovery_code"`
			} `json:"recovery"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("reset-password -o json: %v\n%s", err, r.stdout)
		}
		link, err := url.Parse(res.Recovery.Link)
		if err != nil || !strings.HasPrefix(res.Recovery.Link, ui+"/ui/recovery?flow=") || !regexp.MustCompile(`^[0-9]{6}$`).MatchString(res.Recovery.Code) {
			t.Fatalf("recovery link %q and code %q", res.Recovery.Link, res.Recovery.Code)
		}
		// The owner opens the link in a browser and enters the code: the flow issues a session
		// (cookie) for the identity.
		who := pluginRecover(t, ctx, user.HTTPClient, link.Query().Get("flow"), res.Recovery.Code)
		if who != id {
			t.Fatalf("the recovery code logged in identity %q, want %s", who, id)
		}
		// The human-readable form has both too.
		r = webCLI.run(t, "", "identity", "create-admin", "--username", "grace", "--email", "grace.plugin@example.test").ok(t)
		if !strings.Contains(r.stdout, "recovery link: "+ui+"/ui/recovery?flow=") || !strings.Contains(r.stdout, "recovery code: ") {
			t.Fatalf("create-admin without a password printed:\n%s", r.stdout)
		}
	})

	t.Run("reset-mfa removes TOTP enrolled through the settings flow", func(t *testing.T) {
		tok, err := user.LoginPassword(ctx, email, pw2)
		if err != nil {
			t.Fatal(err)
		}
		if err := user.EnrolTOTP(ctx, tok); err != nil {
			t.Fatalf("enrol TOTP: %v", err)
		}
		if i, _ := getIdentity(id); !pluginHasCredential(i, "totp") {
			t.Fatalf("admin API: no totp credentials after enrolment: %v", pluginCredentialTypes(i))
		}
		r := webCLI.run(t, "", "identity", "reset-mfa", "--email", email, "--type", "totp").ok(t)
		if strings.TrimSpace(r.stdout) != "totp credentials of identity/"+id+" removed" {
			t.Fatalf("reset-mfa printed %q", r.stdout)
		}
		if i, _ := getIdentity(id); pluginHasCredential(i, "totp") || !pluginHasCredential(i, "password") {
			t.Fatalf("admin API after reset-mfa: credentials %v, want password without totp", pluginCredentialTypes(i))
		}
	})

	t.Run("oidc list and unlink imported accounts", func(t *testing.T) {
		social := "social.plugin@example.test"
		body := client.NewCreateIdentityBody("default", map[string]interface{}{"email": social})
		body.Credentials = &client.IdentityWithCredentials{Oidc: &client.IdentityWithCredentialsOidc{Config: &client.IdentityWithCredentialsOidcConfig{
			Providers: []client.IdentityWithCredentialsOidcConfigProvider{{Provider: "github", Subject: "12345"}, {Provider: "github", Subject: "67890"}},
		}}}
		imported, _, err := api.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(*body).Execute()
		if err != nil {
			t.Fatalf("admin API: import OIDC credentials: %v", err)
		}
		r := webCLI.run(t, "", "identity", "oidc", "list", "--email", social).ok(t)
		for _, w := range []string{"github:12345", "github:67890"} {
			if !strings.Contains(r.stdout, w) {
				t.Fatalf("oidc list does not show %s:\n%s", w, r.stdout)
			}
		}
		r = webCLI.run(t, "", "identity", "oidc", "unlink", "--email", social, "--credential-id", "github:12345").ok(t)
		if strings.TrimSpace(r.stdout) != "OIDC account github:12345 unlinked from identity/"+imported.Id {
			t.Fatalf("oidc unlink printed %q", r.stdout)
		}
		i, _ := getIdentity(imported.Id)
		if got := pluginOIDCIdentifiers(i); strings.Join(got, ",") != "github:67890" {
			t.Fatalf("admin API after unlink: OIDC identifiers %v, want [github:67890]", got)
		}
		r = webCLI.run(t, "", "identity", "oidc", "unlink", imported.Id, "--credential-id", "github:12345")
		if r.code != 1 || !strings.Contains(r.stderr, "github:67890") {
			t.Fatalf("unlink of an unlinked account: exit %d, %q", r.code, r.stderr)
		}
	})

	t.Run("get --email is one admin call; latency of the whole command", func(t *testing.T) {
		// More identities than Kratos's default page (250): a scan would need several calls.
		const fillers = 300
		pluginFill(t, ctx, api, fillers)
		before := pluginAdminRequests(t, ctx, s, web)
		r := webCLI.run(t, "", "identity", "get", "--email", email, "-o", "json").ok(t)
		if !strings.Contains(r.stdout, id) {
			t.Fatalf("get --email: %s", r.stdout)
		}
		after := pluginAdminRequests(t, ctx, s, web)
		calls := after[len(before):]
		if len(calls) != 1 || calls[0] != "GET /admin/identities" {
			t.Fatalf("identity get --email made %d admin API calls, want 1: %q", len(calls), calls)
		}
		t.Logf("identity get --email with %d+ identities: one admin API call (%s)", fillers, calls[0])

		const runs = 10
		var took []time.Duration
		for i := 0; i < runs; i++ {
			took = append(took, webCLI.run(t, "", "identity", "get", "--email", email).ok(t).took)
		}
		sort.Slice(took, func(a, b int) bool { return took[a] < took[b] })
		t.Logf("`kubectl-kratos identity get --email` (built binary, process start to exit, port-forward through kube-apiserver and the real kubelet included) over %d runs: min %s, p50 %s, max %s",
			runs, took[0].Round(time.Millisecond), took[runs/2].Round(time.Millisecond), took[runs-1].Round(time.Millisecond))
		if took[runs/2] > 2*time.Second {
			t.Errorf("p50 %s: want well under a second or two", took[runs/2])
		}
	})

	t.Run("delete", func(t *testing.T) {
		r := webCLI.run(t, "", "identity", "delete", "--email", email).ok(t)
		if strings.TrimSpace(r.stdout) != "identity/"+id+" deleted" {
			t.Fatalf("delete printed %q", r.stdout)
		}
		if _, code := getIdentity(id); code != http.StatusNotFound {
			t.Fatalf("admin API: identity %s after delete: HTTP %d, want 404", id, code)
		}
		r = webCLI.run(t, "", "identity", "get", "--email", email)
		if r.code != 1 || !strings.Contains(r.stderr, "no identity has the login identifier") {
			t.Fatalf("get after delete: exit %d, %q", r.code, r.stderr)
		}
	})

	t.Run("migrate through exec; the pod then becomes Ready", func(t *testing.T) {
		acc := admin.with("--instance", "accounts")
		// A failing migration: the role may not create tables (its database now belongs to
		// postgres). The kubelet passes kratos's exit code through the API server.
		if _, err := pg.SQL(ctx, "postgres", "ALTER DATABASE "+accountsDB.Name+" OWNER TO postgres"); err != nil {
			t.Fatal(err)
		}
		r := acc.run(t, "", "migrate", "--timeout", "2m")
		if r.code != 1 || !regexp.MustCompile(`kratos migrate exited with status [1-9]`).MatchString(r.stderr) {
			t.Fatalf("failing migration: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		t.Logf("%s", pluginLastLine(r.stderr))
		if _, err := pg.SQL(ctx, "postgres", "ALTER DATABASE "+accountsDB.Name+" OWNER TO "+accountsDB.User); err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		r = acc.run(t, "", "migrate", "--timeout", "3m").ok(t)
		// A line per migration and a summary counting them (read from Kratos's JSON log), not
		// Kratos's log itself.
		if !regexp.MustCompile(`Database of instance accounts migrated: applied [1-9][0-9]* migrations in `).MatchString(r.stderr) ||
			!regexp.MustCompile(`(?m)^applied \d{14,} \w+$`).MatchString(r.stdout) || strings.Contains(r.stdout+r.stderr, `"level":`) {
			t.Fatalf("migrate output:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "kratos migrate sql -e --yes -c "+inject.ConfigPath) {
			t.Fatalf("migrate did not run kratos migrate with the rendered config:\n%s", r.stderr)
		}
		t.Logf("migrate of a fresh Postgres database through exec: %s", r.took.Round(time.Millisecond))
		if n, err := pg.SQL(ctx, accountsDB.Name, "select count(*) from information_schema.tables where table_name in ('identities','sessions','networks')"); err != nil || n != "3" {
			t.Fatalf("Kratos's tables in %s after migrate: %q, %v", accountsDB.Name, n, err)
		}
		if _, err := testbed.WaitPodReady(ctx, cs, ns, accounts.Name, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("pod %s Ready %s after the migration started", accounts.Name, time.Since(start).Round(time.Millisecond))
		acc.run(t, "", "identity", "list").ok(t)
	})
}

// pluginCLI runs the built kubectl-kratos with fixed leading arguments.
type pluginCLI struct {
	bin  string
	args []string
}

func (c *pluginCLI) with(args ...string) *pluginCLI {
	return &pluginCLI{bin: c.bin, args: append(append([]string{}, c.args...), args...)}
}

type pluginResult struct {
	args           []string
	code           int
	stdout, stderr string
	took           time.Duration
}

func (c *pluginCLI) run(t *testing.T, stdin string, args ...string) pluginResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	all := append(append([]string{}, c.args...), args...)
	cmd := exec.CommandContext(ctx, c.bin, all...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := pluginResult{args: all, stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	pluginOutput(all, r.stdout, r.stderr)
	if slices.Contains(all, "--password-stdin") {
		rememberSecret("a password piped into kubectl-kratos "+strings.Join(args, " "), stdin)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("kubectl-kratos %s: %v", strings.Join(all, " "), err)
	}
	return r
}

func (r pluginResult) ok(t *testing.T) pluginResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("kubectl-kratos %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// pluginDeploy creates a one-replica Deployment on the real node, labelled for injection: its
// pod goes through the API server's admission to the running `webhook serve`, which injects it.
func pluginDeploy(t *testing.T, ctx context.Context, s *stack, ns, name, nodeName string, annotations map[string]string) {
	t.Helper()
	d := deployment(name, 1, map[string]string{inject.LabelInject: "true"}, annotations, corev1.PodSpec{
		NodeSelector:                  map[string]string{"kubernetes.io/hostname": nodeName},
		TerminationGracePeriodSeconds: ptr(int64(1)),
		Containers: []corev1.Container{{Name: "app", Image: testbed.BusyboxImage,
			Command: []string{"sh", "-c", "exec sleep 3600"}}},
	})
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, d, createOpts); err != nil {
		t.Fatalf("deployment %s: %v", name, err)
	}
}

// pluginWaitPod waits for the instance's pod that satisfies ok.
func pluginWaitPod(t *testing.T, s *stack, ns, instance string, timeout time.Duration, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	waitPods(t, s.CP.Client, ns, inject.LabelInstance+"="+instance, timeout, func(pods []corev1.Pod) error {
		for i := range pods {
			if pods[i].DeletionTimestamp == nil && ok(&pods[i]) {
				got = &pods[i]
				return nil
			}
		}
		if len(pods) == 0 {
			return fmt.Errorf("no pod of instance %s", instance)
		}
		return fmt.Errorf("pod %s not %s:\n%s", pods[0].Name, what, testbed.PodReport(context.Background(), s.CP.Client, ns, pods[0].Name))
	})
	return got
}

// pluginGrant gives user the rules in ns (Role + RoleBinding) and waits until RBAC applies them.
func pluginGrant(t *testing.T, ctx context.Context, s *stack, ns, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	name := "plugin-" + user
	if _, err := s.CP.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, createOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CP.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, createOpts); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(s.CP.UserConfig(user))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("RBAC for %s not effective: %v", user, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pluginRecover does what the identity's owner does with an admin-issued recovery: opens the
// flow and submits the code, as a browser (JSON, cookies). It returns the identity ID of the
// session the flow issued.
func pluginRecover(t *testing.T, ctx context.Context, hc *http.Client, flowID, code string) string {
	t.Helper()
	publicURL := pluginPublicBase
	body, _ := json.Marshal(map[string]string{"method": "code", "code": code})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, publicURL+"/self-service/recovery?flow="+url.QueryEscape(flowID), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A browser flow answers a JSON request with "browser location change required" (to the
	// settings flow, where the new password is chosen) and the session cookie.
	if resp.StatusCode != http.StatusUnprocessableEntity && resp.StatusCode != http.StatusOK {
		t.Fatalf("submit recovery code: HTTP %d: %.500s", resp.StatusCode, b)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "ory_kratos_session" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("submit recovery code: HTTP %d, no session cookie: %.500s", resp.StatusCode, b)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, publicURL+"/sessions/whoami", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var who struct {
		Identity struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &who) != nil {
		t.Fatalf("whoami with the recovery session: HTTP %d: %.300s", resp.StatusCode, b)
	}
	return who.Identity.ID
}

// pluginPublicBase is the injected Kratos's public base URL (the public-url default).
const pluginPublicBase = "http://127.0.0.1:4433"

// pluginThrough is an HTTP client that reaches pluginPublicBase's host through the port-forward
// fw, and nothing else.
func pluginThrough(fw *instance.Forward) *http.Client {
	local := strings.TrimPrefix(fw.URL, "http://")
	base := strings.TrimPrefix(pluginPublicBase, "http://")
	var d net.Dialer
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != base {
				return nil, fmt.Errorf("the test client dials only %s (through the port-forward), not %s", base, addr)
			}
			return d.DialContext(ctx, network, local)
		},
	}}
}

func pluginCredentialTypes(i *client.Identity) []string {
	var types []string
	if i != nil && i.Credentials != nil {
		for k := range *i.Credentials {
			types = append(types, k)
		}
	}
	sort.Strings(types)
	return types
}

func pluginHasCredential(i *client.Identity, typ string) bool {
	for _, c := range pluginCredentialTypes(i) {
		if c == typ {
			return true
		}
	}
	return false
}

func pluginOIDCIdentifiers(i *client.Identity) []string {
	if i == nil || i.Credentials == nil {
		return nil
	}
	c, ok := (*i.Credentials)["oidc"]
	if !ok {
		return nil
	}
	ids := append([]string{}, c.Identifiers...)
	sort.Strings(ids)
	return ids
}

// pluginFill creates n identities without credentials through the admin API.
func pluginFill(t *testing.T, ctx context.Context, api *client.APIClient, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := client.NewCreateIdentityBody("default", map[string]interface{}{"email": fmt.Sprintf("filler-%d@example.test", i)})
				if _, _, err := api.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(*body).Execute(); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create filler identity: %v", err)
	}
}

// pluginAdminRequests lists the admin API requests ("METHOD path") the pod's Kratos has
// logged so far (Kratos logs every request at level info, health checks excepted).
func pluginAdminRequests(t *testing.T, ctx context.Context, s *stack, pod *corev1.Pod) []string {
	t.Helper()
	raw, err := s.CP.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: inject.ContainerKratos}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s: %v", pod.Name, err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			Request struct {
				Method string `json:"method"`
				Path   string `json:"path"`
			} `json:"http_request"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "completed handling request" ||
			!strings.HasPrefix(line.Request.Path, "/admin/") {
			continue
		}
		// Kratos redacts the query (it holds the email): the path is what the log tells.
		out = append(out, line.Request.Method+" "+line.Request.Path)
	}
	return out
}

func pluginLastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
