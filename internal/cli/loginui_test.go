package cli_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance/clustertest"
)

// The recovery that create-admin and reset-password issue without a password, for an instance
// with a login UI and one without: each pod carries the annotations its Kratos was rendered from
// (config.Render, as the kratos-config init container runs it), and the plugin reaches it through
// the API server's port-forward, reading the login UI from the pod it connects to.

const loginUI = "https://login.example.test"

// renderedInstance starts a Kratos rendered from annotations and an injected, Ready pod with
// those annotations whose admin port leads to it, in a new namespace; it returns the kubectl
// flags that reach it (as alice, an operator there) and the Kratos.
func renderedInstance(t *testing.T, annotations map[string]string) ([]string, *kratostest.Server) {
	t.Helper()
	spec, err := inject.ParseAnnotations(annotations, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kratostest.StartRendered(*spec)
	if err != nil {
		t.Fatalf("start Kratos with the rendered config: %v", err)
	}
	t.Cleanup(srv.Stop)
	ns := cluster.Namespace(t, "ui")
	// An instance name of its own: other tests look for theirs across namespaces (status -A).
	pod := clustertest.Pod(ns, "idp-5c4b", "idp")
	for k, v := range annotations {
		pod.Annotations[k] = v
	}
	pod = cluster.RunPod(t, pod)
	cluster.Forward(t, pod, 4434, strings.TrimPrefix(srv.AdminURL, "http://"))
	waitForward(t, pod, "/admin/health/alive")
	operator(t, ns, "alice")
	return []string{"--kubeconfig", cluster.Kubeconfig(t, "alice", ns)}, srv
}

// recoveryJSON is the recovery in -o json.
type recoveryJSON struct {
	Identity struct {
		ID string `json:"id"`
	} `json:"identity"`
	IdentityID string `json:"identity_id"`
	Recovery   map[string]any
}

func parseRecovery(t *testing.T, out string) recoveryJSON {
	t.Helper()
	var r recoveryJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Recovery == nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	return r
}

var (
	codeLine = regexp.MustCompile(`(?m)^recovery code: [0-9]{6}$`)
	uuidRE   = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
)

func TestRecoveryWithLoginUI(t *testing.T) {
	g, srv := renderedInstance(t, map[string]string{
		inject.AnnotationFeatures: "local-idp,recovery", inject.AnnotationUIURL: loginUI, inject.AnnotationLogLevel: "warning",
	})
	email := mail("ui")

	r := kk(t, "", append(g, "identity", "create-admin", "--username", strings.Split(email, "@")[0], "--email", email)...).ok(t, "create-admin")
	t.Logf("create-admin with a login UI printed:\n%s", r.stdout)
	link := regexp.MustCompile(`(?m)^recovery link: (\S+)$`).FindStringSubmatch(r.stdout)
	if link == nil || !codeLine.MatchString(r.stdout) || strings.Contains(r.stdout, "no login UI") {
		t.Fatalf("create-admin printed:\n%s", r.stdout)
	}
	// The link is the login UI's recovery page for a flow the public API serves.
	u, err := url.Parse(link[1])
	if err != nil || u.Scheme+"://"+u.Host+u.Path != loginUI+"/ui/recovery" || !regexp.MustCompile(`^`+uuidRE+`$`).MatchString(u.Query().Get("flow")) {
		t.Fatalf("recovery link %q: want %s/ui/recovery?flow=<id>", link[1], loginUI)
	}
	wantRecoveryFlow(t, srv, u.Query().Get("flow"))

	r = kk(t, "", append(g, "identity", "reset-password", "--email", email, "-o", "json")...).ok(t, "reset-password")
	res := parseRecovery(t, r.stdout)
	flow, _ := res.Recovery["flow_id"].(string)
	if res.Recovery["recovery_link"] != loginUI+"/ui/recovery?flow="+flow || res.Recovery["login_ui"] != loginUI ||
		!regexp.MustCompile(`^[0-9]{6}$`).MatchString(res.Recovery["recovery_code"].(string)) || res.Recovery["expires_at"] == nil {
		t.Fatalf("reset-password -o json: recovery %v", res.Recovery)
	}
	wantRecoveryFlow(t, srv, flow)

	r = kk(t, "", append(g, "identity", "reset-password", "--email", email)...).ok(t, "reset-password")
	t.Logf("reset-password with a login UI printed:\n%s", r.stdout)
	if !strings.Contains(r.stdout, ": open the link and enter the code to choose a new password\nrecovery link: "+loginUI+"/ui/recovery?flow=") {
		t.Fatalf("reset-password printed:\n%s", r.stdout)
	}
}

func TestRecoveryWithoutLoginUI(t *testing.T) {
	g, srv := renderedInstance(t, map[string]string{inject.AnnotationFeatures: "local-idp,recovery", inject.AnnotationLogLevel: "warning"})
	email := mail("noui")

	r := kk(t, "", append(g, "identity", "create-admin", "--username", strings.Split(email, "@")[0], "--email", email)...).ok(t, "create-admin")
	t.Logf("create-admin without a login UI printed:\n%s", r.stdout)
	id := strings.TrimPrefix(strings.Fields(r.stdout)[0], "identity/")
	// The hint's command reaches the same instance: its namespace and name.
	sameInstance := `-n ui-\S+ --instance idp`
	checkNoUIText(t, srv, r.stdout, id, sameInstance)

	r = kk(t, "", append(g, "identity", "reset-password", id, "-o", "yaml")...).ok(t, "reset-password")
	for _, absent := range []string{"recovery_link", "login_ui"} {
		if strings.Contains(r.stdout, absent) {
			t.Errorf("reset-password -o yaml without a login UI has %s:\n%s", absent, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^  flow_id: `+uuidRE+`$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^  recovery_code: "[0-9]{6}"$`).MatchString(r.stdout) {
		t.Fatalf("reset-password -o yaml:\n%s", r.stdout)
	}

	r = kk(t, "", append(g, "identity", "reset-password", id)...).ok(t, "reset-password")
	t.Logf("reset-password without a login UI printed:\n%s", r.stdout)
	if !strings.HasPrefix(r.stdout, "recovery issued for identity/"+id+"\n") {
		t.Fatalf("reset-password printed:\n%s", r.stdout)
	}
	checkNoUIText(t, srv, r.stdout, id, sameInstance)

	// --admin-url reaches no pod: that Kratos issues no link to a login UI says the same.
	r = kk(t, "", "--admin-url", srv.AdminURL, "identity", "reset-password", id).ok(t, "reset-password --admin-url")
	checkNoUIText(t, srv, r.stdout, id, regexp.QuoteMeta("--admin-url "+srv.AdminURL))
}

// checkNoUIText checks the text of a recovery without a login UI: no link, says so, the flow
// (which exists) and the code, and both ways to use them, the command with the flags (target, a
// regular expression) that reach the same instance.
func checkNoUIText(t *testing.T, srv *kratostest.Server, out, id, target string) {
	t.Helper()
	flow := regexp.MustCompile(`(?m)^recovery flow: (` + uuidRE + `)$`).FindStringSubmatch(out)
	if strings.Contains(out, "recovery link") || strings.Contains(out, "ory.sh") || flow == nil || !codeLine.MatchString(out) ||
		!strings.Contains(out, "no login UI is configured (the kratos-injector.io/ui-url annotation sets one): there is no recovery page to open\n") ||
		!strings.Contains(out, "POST /self-service/recovery?flow="+flow[1]+"\n") ||
		!regexp.MustCompile(`(?m)^or set the password yourself: kubectl kratos `+target+` identity reset-password `+id+` --password-stdin \(or --password-secret NAME\[/KEY\]\)$`).MatchString(out) {
		t.Fatalf("recovery without a login UI printed:\n%s", out)
	}
	wantRecoveryFlow(t, srv, flow[1])
}

// wantRecoveryFlow checks that the public API serves the recovery flow, as it does to the login
// UI's page.
func wantRecoveryFlow(t *testing.T, srv *kratostest.Server, id string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.PublicURL+"/self-service/recovery/flows?id="+url.QueryEscape(id), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&f) != nil || f.ID != id || f.State != "sent_email" {
		t.Fatalf("GET /self-service/recovery/flows?id=%s: HTTP %d, flow %+v", id, resp.StatusCode, f)
	}
}
