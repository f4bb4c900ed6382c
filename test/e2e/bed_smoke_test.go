package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kratos "github.com/ory/kratos-client-go"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// A Deployment's pod is created by the real controllers, scheduled by the real scheduler onto the
// kwok node, and Running.
func TestBedDeploymentRunsOnKwok(t *testing.T) {
	s := cluster(t)
	ns := namespace(t, s, "smoke-deploy")
	lbl := map[string]string{"app": "smoke"}
	one := int32(2)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"type": "kwok"},
					Tolerations:  []corev1.Toleration{testbed.KwokToleration},
					Containers:   []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
				},
			},
		},
	}
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(context.Background(), dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pods := waitPods(t, s.CP.Client, ns, selector(lbl), 90*time.Second, podsRunning(2))
	for _, p := range pods {
		if p.Spec.NodeName != s.KwokNode {
			t.Errorf("pod %s on node %q, want %s", p.Name, p.Spec.NodeName, s.KwokNode)
		}
		if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "ReplicaSet" {
			t.Errorf("pod %s owners %v, want one ReplicaSet (created by the controllers)", p.Name, p.OwnerReferences)
		}
		if !strings.HasPrefix(p.Name, "smoke-") || p.GenerateName == "" {
			t.Errorf("pod name %q generateName %q: not made by a ReplicaSet", p.Name, p.GenerateName)
		}
	}
}

// The API server really calls a MutatingWebhookConfiguration's TLS endpoint for a labelled pod and
// never for an unlabelled one (objectSelector).
func TestBedWebhookObjectSelector(t *testing.T) {
	s := cluster(t)
	ns := namespace(t, s, "smoke-webhook")
	var calls atomic.Int64
	srv, url := serveTLS(t, s.CP.CA, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var review admissionv1.AdmissionReview
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		patch := `[{"op":"add","path":"/metadata/annotations","value":{"smoke.kratos-injector.io/called":"true"}}]`
		pt := admissionv1.PatchTypeJSONPatch
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: []byte(patch), PatchType: &pt}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	})
	defer srv.Close()
	_, err := s.CP.RegisterWebhook(context.Background(), testbed.WebhookOptions{
		Name: "smoke-" + ns, URL: url + "/mutate", CABundle: s.CP.CA.CertPEM,
		ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"smoke-inject": "true"}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name string, labelled bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
			NodeName: s.KwokNode, Tolerations: []corev1.Toleration{testbed.KwokToleration},
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		}}
		if labelled {
			p.Labels = map[string]string{"smoke-inject": "true"}
		}
		return p
	}
	// The API server loads webhook configurations asynchronously: dry-run labelled pods until the
	// webhook answers.
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, pod("probe", true), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Annotations["smoke.kratos-injector.io/called"] == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook never called by the API server (last err %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := calls.Load()
	got, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, pod("labelled", true), createOpts)
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations["smoke.kratos-injector.io/called"] != "true" {
		t.Errorf("labelled pod not mutated: annotations %v", got.Annotations)
	}
	if n := calls.Load() - before; n < 1 {
		t.Errorf("webhook calls for labelled pod = %d, want >= 1", n)
	}
	before = calls.Load()
	got, err = s.CP.Client.CoreV1().Pods(ns).Create(ctx, pod("unlabelled", false), createOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Annotations["smoke.kratos-injector.io/called"]; ok {
		t.Errorf("unlabelled pod was mutated")
	}
	if n := calls.Load() - before; n != 0 {
		t.Errorf("webhook called %d times for an unlabelled pod, want 0", n)
	}
}

// serveTLS runs an in-process HTTPS server on 127.0.0.1 with a certificate from the bed's CA.
func serveTLS(t testing.TB, ca *testbed.CA, h http.HandlerFunc) (*http.Server, string) {
	t.Helper()
	cfg, err := ca.TLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(l, cfg)) }()
	return srv, "https://" + l.Addr().String()
}

// Kratos migrates a fresh Postgres database, answers /health/ready, creates an identity through
// kratos-client-go, and the recovery mail it sends arrives in Mailpit.
func TestBedKratosPostgresMailpit(t *testing.T) {
	b := theBed(t)
	p := postgres(t)
	m := mailpit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, err := p.NewDatabase(ctx, "smoke", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	schema, err := os.ReadFile("testdata/smoke.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "identity.schema.json"), schema, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`dsn: %q
identity:
  default_schema_id: default
  schemas: [{id: default, url: "file://%s/identity.schema.json"}]
selfservice:
  default_browser_return_url: http://127.0.0.1:4455/
  methods:
    password: {enabled: true, config: {haveibeenpwned_enabled: false}}
    code: {enabled: true}
  flows:
    recovery: {enabled: true, use: code}
secrets:
  default: [smoke-default-secret-0123456789]
  cookie: [smoke-cookie-secret-0123456789]
  cipher: [32-LONG-SECRET-NOT-SECURE-AT-ALL]
hashers: {algorithm: bcrypt, bcrypt: {cost: 4}}
courier:
  smtp:
    connection_uri: "smtp://%s:%d/?disable_starttls=true"
    from_address: smoke@example.test
    from_name: Smoke
`, db.DSN("127.0.0.1"), dir, m.SMTPHost, m.SMTPPort)
	cfgPath := filepath.Join(dir, "kratos.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := b.StartKratos(ctx, testbed.KratosOptions{Name: "kratos-smoke", ConfigFile: cfgPath, Migrate: true, Dev: true, WatchCourier: true})
	if err != nil {
		t.Fatal(err)
	}
	// The migration really wrote Kratos's schema into this database.
	n, err := p.SQL(ctx, db.Name, "select count(*) from identities")
	if err != nil || n != "0" {
		t.Fatalf("identities table in %s: %q, %v", db.Name, n, err)
	}

	conf := kratos.NewConfiguration()
	conf.Servers = kratos.ServerConfigurations{{URL: k.AdminURL}}
	admin := kratos.NewAPIClient(conf)
	email := "smoke@example.test"
	id, _, err := admin.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(kratos.CreateIdentityBody{
		SchemaId: "default", Traits: map[string]any{"email": email},
	}).Execute()
	if err != nil {
		t.Fatalf("create identity: %v", err)
	}
	if n, _ := p.SQL(ctx, db.Name, "select count(*) from identities"); n != "1" {
		t.Fatalf("identities in Postgres after create = %q, want 1", n)
	}

	// A self-service recovery flow (API) sends the code by mail.
	pubConf := kratos.NewConfiguration()
	pubConf.Servers = kratos.ServerConfigurations{{URL: k.PublicURL}}
	public := kratos.NewAPIClient(pubConf)
	flow, _, err := public.FrontendAPI.CreateNativeRecoveryFlow(ctx).Execute()
	if err != nil {
		t.Fatalf("recovery flow: %v", err)
	}
	body := kratos.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(&kratos.UpdateRecoveryFlowWithCodeMethod{Method: "code", Email: &email})
	if _, _, err := public.FrontendAPI.UpdateRecoveryFlow(ctx).Flow(flow.Id).UpdateRecoveryFlowBody(body).Execute(); err != nil {
		t.Fatalf("submit recovery flow: %v", err)
	}
	msg, err := m.WaitMessageTo(ctx, email)
	if err != nil {
		t.Fatalf("%v; end of Kratos log:\n%s", err, k.Proc.Tail(20))
	}
	if msg.From.Address != "smoke@example.test" {
		t.Errorf("mail from %q, want the configured sender", msg.From.Address)
	}
	text, err := m.MessageText(ctx, msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(text), "code") {
		t.Errorf("recovery mail has no code: %q", text)
	}
	t.Logf("identity %s, recovery mail %q arrived", id.Id, msg.Subject)
}
