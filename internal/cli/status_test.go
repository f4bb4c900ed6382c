package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance/clustertest"
)

// injectedPod is what the webhook makes of a labelled pod named name of instance with the
// given annotations: the real injection core, then created in ns.
func injectedPod(t *testing.T, ns, name, instance string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations,
			Labels: map[string]string{inject.LabelInject: "true", inject.LabelInstance: instance, "app": instance}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}
	res, err := inject.Inject(p, inject.Options{InjectorImage: "registry.example.com/kratos-injector:test"})
	if err != nil {
		t.Fatal(err)
	}
	return res.Pod
}

// podRunningStatus is the status a kubelet reports for the pod when every container runs and is
// Ready, every plain init container completed.
func podRunningStatus(p *corev1.Pod) corev1.PodStatus {
	now := metav1.Now()
	s := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue},
	}}
	running := func(c corev1.Container) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: c.Name, Image: c.Image, Ready: true, Started: ptrOf(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}
	}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			s.InitContainerStatuses = append(s.InitContainerStatuses, running(c))
			continue
		}
		s.InitContainerStatuses = append(s.InitContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptrOf(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}})
	}
	for _, c := range p.Spec.Containers {
		s.ContainerStatuses = append(s.ContainerStatuses, running(c))
	}
	return s
}

func ptrOf[T any](v T) *T { return &v }

// markUnready marks the pod initializing and not Ready, its app containers waiting.
func markUnready(s *corev1.PodStatus) {
	s.Phase = corev1.PodPending
	for i := range s.Conditions {
		if c := &s.Conditions[i]; c.Type != corev1.PodScheduled {
			c.Status, c.Reason = corev1.ConditionFalse, "ContainersNotReady"
		}
	}
	for i := range s.ContainerStatuses {
		st := &s.ContainerStatuses[i]
		st.Ready, st.Started = false, ptrOf(false)
		st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	}
}

func initStatusOf(s *corev1.PodStatus, name string) *corev1.ContainerStatus {
	for i := range s.InitContainerStatuses {
		if s.InitContainerStatuses[i].Name == name {
			return &s.InitContainerStatuses[i]
		}
	}
	panic("no init container " + name)
}

// selfSignedCA returns a PEM CA certificate valid from notBefore to notAfter.
func selfSignedCA(t *testing.T, cn string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// registerWebhook creates a MutatingWebhookConfiguration that can never affect a test: its
// object selector matches a label no pod has, and failures are ignored.
func registerWebhook(t *testing.T, name, webhook string, caBundle []byte) {
	t.Helper()
	ignore, none := admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone
	url := "https://127.0.0.1:1/mutate"
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    webhook,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"kratos-injector.io/never": "true"}},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}},
	}
	api := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(clustertest.Context(t), cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Delete(clustertest.Context(t), name, metav1.DeleteOptions{}) })
}

func statusReport(t *testing.T, args ...string) cli.StatusReport {
	t.Helper()
	code, stdout, stderr := pluginMain(t, "", append([]string{"status", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	var rep cli.StatusReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, stdout)
	}
	return rep
}

// TestStatus: pods created through the real API server in the states an injected pod goes
// through; status explains each, shows the OIDC redirect URIs read from the IdP Secrets and
// checks the webhook's CA bundle.
func TestStatus(t *testing.T) {
	ns := cluster.Namespace(t, "status")
	admin := []string{"--kubeconfig", cluster.Kubeconfig(t, "admin", ns)}
	ctx := clustertest.Context(t)
	for name, data := range map[string]map[string]string{
		"github-idp": {"provider": "github", "client_id": "c", "client_secret": "s"},
		"corp-sso":   {"provider": "generic", "id": "corp", "client_id": "c", "client_secret": "s", "issuer_url": "https://sso.example.com"},
	} {
		if _, err := cluster.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Instance web: one Ready pod (kwok runs it), one whose Postgres is not migrated yet.
	webAnn := map[string]string{
		inject.AnnotationDatabaseSecret: "web-db", // postgres: migrate manual by default
		inject.AnnotationIDPSecrets:     "github-idp, corp-sso",
		inject.AnnotationPublicURL:      "https://auth.example.com/",
	}
	cluster.RunPod(t, injectedPod(t, ns, "web-1", "web", webAnn))
	web2 := injectedPod(t, ns, "web-2", "web", webAnn)
	st := podRunningStatus(web2)
	markUnready(&st)
	k := initStatusOf(&st, inject.ContainerKratos)
	k.Ready, k.Started = false, ptrOf(false)
	cluster.PodWithStatus(t, web2, st, false)

	// Instance broken: the render init container fails on a missing key, and restarts.
	broken := injectedPod(t, ns, "broken-1", "broken", map[string]string{inject.AnnotationDatabaseSecret: "pg-incomplete"})
	st = podRunningStatus(broken)
	markUnready(&st)
	renderMsg := `secret "pg-incomplete" key "password": missing; add it to the Secret or use key "dsn"`
	*initStatusOf(&st, inject.ContainerConfig) = corev1.ContainerStatus{Name: inject.ContainerConfig, Image: "registry.example.com/kratos-injector:test", RestartCount: 3,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: renderMsg + "\n"}}}
	k = initStatusOf(&st, inject.ContainerKratos)
	k.Ready, k.Started, k.State = false, ptrOf(false), corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	cluster.PodWithStatus(t, broken, st, false)

	// Instance crashy: Kratos itself crash-loops (SQLite, another image).
	crashy := injectedPod(t, ns, "crashy-1", "crashy", map[string]string{inject.AnnotationImage: "oryd/kratos:v1.3.0", inject.AnnotationSecretsSecret: "crashy"})
	st = podRunningStatus(crashy)
	markUnready(&st)
	k = initStatusOf(&st, inject.ContainerKratos)
	k.Ready, k.Started, k.RestartCount = false, ptrOf(false), 5
	k.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	k.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
		Message: "level=fatal msg=\"unable to load config\"\nmore lines"}}
	cluster.PodWithStatus(t, crashy, st, false)

	// The webhook, registered with a CA valid for a year.
	expires := time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	registerWebhook(t, "kratos-injector", "pods.kratos-injector.io", selfSignedCA(t, "kratos-injector-ca", time.Now().Add(-time.Hour), expires))

	rep := statusReport(t, admin...)
	if len(rep.Instances) != 3 {
		t.Fatalf("instances %+v, want broken, crashy, web", rep.Instances)
	}
	// kubectl's template printers read the same report.
	if code, stdout, stderr := pluginMain(t, "", append([]string{"status", "-o", "jsonpath={.kind}:{.instances[*].name}"}, admin...)...); code != 0 || stdout != "Status:broken crashy web" {
		t.Errorf("status -o jsonpath: exit %d, %q (%s)", code, stdout, stderr)
	}
	if code, _, stderr := pluginMain(t, "", append([]string{"status", "-o", "name"}, admin...)...); code != 2 || !strings.Contains(stderr, "status is one report") {
		t.Errorf("status -o name: exit %d, %q", code, stderr)
	}
	byName := map[string]cli.InstanceStatus{}
	for _, in := range rep.Instances {
		byName[in.Name] = in
		if in.Namespace != ns {
			t.Errorf("instance %s in namespace %q", in.Name, in.Namespace)
		}
	}
	reasons := map[string]string{}
	for _, in := range rep.Instances {
		for _, p := range in.Pods {
			reasons[p.Name] = p.Reason
			if len(p.SpecHash) != 16 || p.InjectorVersion == "" {
				t.Errorf("pod %s: spec hash %q, injector version %q", p.Name, p.SpecHash, p.InjectorVersion)
			}
		}
	}
	wantReasons := map[string]string{
		"web-1":    "",
		"web-2":    "database not migrated: run kubectl kratos migrate",
		"broken-1": "render failed: " + renderMsg,
		"crashy-1": `container kratos crashing (CrashLoopBackOff, 5 restarts): last exit 1 (Error): level=fatal msg="unable to load config"`,
	}
	if d := cmp.Diff(wantReasons, reasons); d != "" {
		t.Errorf("reasons (-want +got):\n%s", d)
	}

	web := byName["web"]
	if web.ReadyPods != 1 || len(web.Pods) != 2 || len(web.SpecHashes) != 1 || web.PublicURL != "https://auth.example.com/" {
		t.Errorf("instance web: %+v", web)
	}
	if got := byName["crashy"].KratosImages; len(got) != 1 || got[0] != "oryd/kratos:v1.3.0" {
		t.Errorf("crashy's Kratos image %v", got)
	}
	if got := web.KratosImages; len(got) != 1 || got[0] != inject.DefaultKratosImage {
		t.Errorf("web's Kratos image %v", got)
	}
	wantProviders := []cli.ProviderStatus{
		{Secret: "github-idp", ID: "github", Verified: true, RedirectURI: "https://auth.example.com/self-service/methods/oidc/callback/github"},
		{Secret: "corp-sso", ID: "corp", Verified: true, RedirectURI: "https://auth.example.com/self-service/methods/oidc/callback/corp"},
	}
	if d := cmp.Diff(wantProviders, web.Providers); d != "" {
		t.Errorf("providers (-want +got):\n%s", d)
	}

	wh := rep.Webhook
	if !wh.Checked || len(wh.Configurations) != 1 {
		t.Fatalf("webhook %+v", wh)
	}
	if c := wh.Configurations[0]; c.Name != "kratos-injector" || !c.CAValid || c.CAExpires == nil || !c.CAExpires.Time.Equal(expires) || c.Problem != "" {
		t.Errorf("webhook configuration %+v, want valid until %s", c, expires)
	}

	// The table says the same.
	code, stdout, stderr := pluginMain(t, "", append([]string{"status"}, admin...)...)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	t.Logf("kubectl kratos status:\n%s", stdout)
	for _, want := range []string{
		"INSTANCE   READY   KRATOS IMAGE",
		"web        1/2     " + inject.DefaultKratosImage,
		"web-2      web        false   Pending",
		"database not migrated: run kubectl kratos migrate",
		"render failed: " + renderMsg,
		"https://auth.example.com/self-service/methods/oidc/callback/corp",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table does not show %q", want)
		}
	}
	wantWebhook := strings.Join([]string{"kratos-injector", "pods.kratos-injector.io", expires.UTC().Format(time.RFC3339), "(in", "364d)", "valid"}, " ")
	if !strings.Contains(stdout, "WEBHOOK CONFIGURATION") || !slices.ContainsFunc(strings.Split(stdout, "\n"), func(l string) bool {
		return strings.Join(strings.Fields(l), " ") == wantWebhook
	}) {
		t.Errorf("table does not show the webhook row %q", wantWebhook)
	}

	t.Run("--instance and -o yaml", func(t *testing.T) {
		code, stdout, stderr := pluginMain(t, "", append([]string{"status", "--instance", "broken", "-o", "yaml"}, admin...)...)
		var rep cli.StatusReport
		if err := yaml.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
			t.Fatalf("exit %d, %v: %s", code, err, stderr)
		}
		if len(rep.Instances) != 1 || rep.Instances[0].Name != "broken" || rep.Instances[0].Pods[0].Reason != "render failed: "+renderMsg {
			t.Errorf("%+v", rep.Instances)
		}
	})

	t.Run("without the right to read Secrets", func(t *testing.T) {
		cluster.Grant(t, ns, "pod-reader", "alice", clustertest.Rule([]string{"pods"}, "list"))
		alice := []string{"--kubeconfig", cluster.Kubeconfig(t, "alice", ns), "--instance", "web"}
		rep := statusReport(t, alice...)
		if len(rep.Instances) != 1 {
			t.Fatalf("instances %+v", rep.Instances)
		}
		for _, p := range rep.Instances[0].Providers {
			if p.Verified || p.ID != p.Secret || p.RedirectURI != "https://auth.example.com/self-service/methods/oidc/callback/"+p.Secret ||
				!strings.Contains(p.Note, "you may not get Secret "+p.Secret) {
				t.Errorf("provider without the Secret: %+v", p)
			}
		}
		if rep.Webhook.Checked || !strings.Contains(rep.Webhook.Message, "you may not list mutatingwebhookconfigurations") {
			t.Errorf("webhook as alice: %+v", rep.Webhook)
		}
		code, stdout, _ := pluginMain(t, "", append([]string{"status"}, alice...)...)
		if code != 0 || !strings.Contains(stdout, "github-idp (Secret name)") || !strings.Contains(stdout, "Note: you may not get Secret github-idp") ||
			!strings.Contains(stdout, "Webhook: not checked") {
			t.Errorf("table as alice (exit %d):\n%s", code, stdout)
		}

		// Without "list" on pods: the permission to ask for.
		code, _, stderr := pluginMain(t, "", "status", "--kubeconfig", cluster.Kubeconfig(t, "bob", ns))
		if want := `you need "list" on "pods" in namespace ` + ns; code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("bob: exit %d, %q; want 1 and %q", code, stderr, want)
		}
	})

	t.Run("-A and an expired CA", func(t *testing.T) {
		other := cluster.Namespace(t, "status-other")
		cluster.RunPod(t, injectedPod(t, other, "solo-1", "solo", nil))
		registerWebhook(t, "legacy-injector", "pods.kratos-injector.io",
			selfSignedCA(t, "old-ca", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
		rep := statusReport(t, append(admin, "-A")...)
		seen := map[string]string{}
		for _, in := range rep.Instances {
			seen[in.Name] = in.Namespace
		}
		if seen["solo"] != other || seen["web"] != ns {
			t.Errorf("-A instances %v", seen)
		}
		var legacy *cli.WebhookConfig
		for i, c := range rep.Webhook.Configurations {
			if c.Name == "legacy-injector" {
				legacy = &rep.Webhook.Configurations[i]
			}
		}
		if legacy == nil || legacy.CAValid || !strings.Contains(legacy.Problem, `CA "old-ca" expired on`) {
			t.Errorf("expired CA: %+v", legacy)
		}
		code, stdout, _ := pluginMain(t, "", append([]string{"status", "-A"}, admin...)...)
		if code != 0 || !strings.Contains(stdout, "NAMESPACE") || !strings.Contains(stdout, other) || !strings.Contains(stdout, `INVALID: CA "old-ca" expired on`) {
			t.Errorf("status -A (exit %d):\n%s", code, stdout)
		}
	})

	t.Run("no instance, no webhook", func(t *testing.T) {
		empty := cluster.Namespace(t, "status-empty")
		code, stdout, stderr := pluginMain(t, "", "status", "--kubeconfig", cluster.Kubeconfig(t, "admin", empty), "--instance", "nothing")
		if code != 0 || !strings.Contains(stderr, "No Kratos instance in namespace "+empty) {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		_ = stdout
	})
}

func TestStatusUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-o", "wide"}, `-o "wide": want one of table, json, yaml`},
		{[]string{"status", "--admin-url", "http://127.0.0.1:4434"}, "--admin-url does not apply to status"},
		{[]string{"status", "extra"}, "accepts no arguments"},
		{[]string{"status", "-l", "a in (b"}, `-l "a in (b"`},
	} {
		code, _, stderr := pluginMain(t, "", append(tc.args, "--kubeconfig", "/nonexistent")...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestStatusShowsIgnoredPodsAndEscapes: a pod that carries the instance label without being
// injected is listed as ignored and counts for nothing; a container's termination message (text
// the pod writes) reaches the table escaped.
func TestStatusShowsIgnoredPodsAndEscapes(t *testing.T) {
	ns := cluster.Namespace(t, "status")
	admin := []string{"--kubeconfig", cluster.Kubeconfig(t, "admin", ns)}

	web := injectedPod(t, ns, "web-1", "web", nil)
	st := podRunningStatus(web)
	markUnready(&st)
	k := initStatusOf(&st, inject.ContainerKratos)
	k.Ready, k.Started, k.RestartCount = false, ptrOf(false), 2
	k.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	k.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
		Message: "level=fatal msg=\x1b]0;pwned\x07\x1b[2Jgone\tfor\u009bgood"}}
	cluster.PodWithStatus(t, web, st, false)
	impostor := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-impostor", Namespace: ns, Labels: map[string]string{inject.LabelInstance: "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}
	cluster.RunPod(t, impostor)

	rep := statusReport(t, admin...)
	if len(rep.Instances) != 1 || len(rep.Instances[0].Pods) != 2 {
		t.Fatalf("instances %+v, want web with two pods", rep.Instances)
	}
	in := rep.Instances[0]
	ignored := in.Pods[1]
	if in.ReadyPods != 0 || !ignored.Ignored || ignored.Name != "web-impostor" ||
		ignored.Reason != "not injected by kratos-injector: ignored (not labelled kratos-injector.io/inject=true)" {
		t.Errorf("instance %+v", in)
	}
	if len(in.KratosImages) != 1 || len(in.SpecHashes) != 1 {
		t.Errorf("the ignored pod counts in the instance's images %v or spec hashes %v", in.KratosImages, in.SpecHashes)
	}

	code, stdout, stderr := pluginMain(t, "", append([]string{"status"}, admin...)...)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	t.Logf("kubectl kratos status:\n%s", stdout)
	if bad := cli.RawControls(stdout); bad != "" {
		t.Errorf("status table holds raw control characters %s", bad)
	}
	for _, want := range []string{
		"web        0/1     ",
		`last exit 1 (Error): level=fatal msg=^[]0;pwned^G^[[2Jgone\tfor\u009bgood`,
		"web-impostor   web        true    Running",
		"not injected by kratos-injector: ignored (not labelled kratos-injector.io/inject=true)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table does not show %q", want)
		}
	}
}
