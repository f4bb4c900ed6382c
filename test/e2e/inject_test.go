package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	kratos "github.com/ory/kratos-client-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

const injectLabel = "kratos-injector.io/inject"

func kwokPod(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeName: "kwok-0", Tolerations: []corev1.Toleration{testbed.KwokToleration},
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
}

func deployment(name string, replicas int32, labels, annotations map[string]string, spec corev1.PodSpec) *appsv1.Deployment {
	sel := map[string]string{"app": name}
	all := map[string]string{"app": name}
	for k, v := range labels {
		all[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: all, Annotations: annotations}, Spec: spec},
		},
	}
}

func kwokSpec() corev1.PodSpec {
	return corev1.PodSpec{
		NodeSelector: map[string]string{"type": "kwok"}, Tolerations: []corev1.Toleration{testbed.KwokToleration},
		Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
	}
}

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

// A labelled Deployment gets injected pods (Running on kwok) through the real API server; an
// unlabelled Deployment never reaches the webhook, as its request counter proves.
func TestInjectDeploymentThroughAPIServer(t *testing.T) {
	s, in := webhook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t, s, "inject-deploy")

	injectedBefore := in.Metric(t, "kratos_injector_injections_total")
	reviewsBefore := in.Metric(t, "controller_runtime_webhook_requests_total")
	dep := deployment("shop", 2, map[string]string{injectLabel: "true"}, nil, kwokSpec())
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pods := waitPods(t, s.CP.Client, ns, "app=shop", 90*time.Second, podsRunning(2))
	for _, p := range pods {
		// The SQLite default migrates automatically, before the native sidecars start.
		if got := containerNames(p.Spec.InitContainers); strings.Join(got, ",") != "kratos-config,kratos-migrate,kratos,kratos-metrics" {
			t.Errorf("pod %s init containers %v, want [kratos-config kratos-migrate kratos kratos-metrics]", p.Name, got)
		}
		if p.Labels[inject.LabelInstance] != "shop" {
			t.Errorf("pod %s instance label %q, want the Deployment's name", p.Name, p.Labels[inject.LabelInstance])
		}
		st, err := inject.ParseStatus(p.Annotations[inject.AnnotationStatus])
		if err != nil || st.SpecHash == "" {
			t.Errorf("pod %s status annotation %q: %v", p.Name, p.Annotations[inject.AnnotationStatus], err)
		}
	}
	if n := in.Metric(t, "kratos_injector_injections_total") - injectedBefore; n < 2 {
		t.Errorf("injections counted %v, want >= 2", n)
	}
	for _, p := range pods {
		checkNoToken(t, &p)
	}
	// One review per pod: the API server's ServiceAccount plugin, run again after the injection,
	// finds nothing to add (the injected containers have kratos-no-token at the token's path),
	// so the webhook is not called a second time (reinvocationPolicy IfNeeded).
	if n := in.Metric(t, "controller_runtime_webhook_requests_total") - reviewsBefore; n != float64(len(pods)) {
		t.Errorf("the webhook received %v reviews for %d pods, want one each", n, len(pods))
	}

	requestsBefore := in.Metric(t, "controller_runtime_webhook_requests_total")
	plain := deployment("plain", 2, nil, nil, kwokSpec())
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, plain, createOpts); err != nil {
		t.Fatal(err)
	}
	pods = waitPods(t, s.CP.Client, ns, "app=plain", 90*time.Second, podsRunning(2))
	for _, p := range pods {
		if len(p.Spec.InitContainers) != 0 || p.Annotations[inject.AnnotationStatus] != "" {
			t.Errorf("unlabelled pod %s was injected", p.Name)
		}
	}
	if n := in.Metric(t, "controller_runtime_webhook_requests_total") - requestsBefore; n != 0 {
		t.Errorf("the webhook received %v requests while only unlabelled pods were created, want 0", n)
	}
}

// checkNoToken: the API server mounted the service-account token in the app's container, and
// in none of the injected ones, which have the empty kratos-no-token over its path instead.
func checkNoToken(t *testing.T, p *corev1.Pod) {
	t.Helper()
	const tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		var at []string
		for _, m := range c.VolumeMounts {
			if m.MountPath == tokenPath {
				at = append(at, m.Name)
			}
		}
		injected := strings.HasPrefix(c.Name, "kratos")
		switch {
		case injected && (len(at) != 1 || at[0] != inject.VolumeNoToken):
			t.Errorf("pod %s: injected container %s mounts %v at the token's path, want only %s", p.Name, c.Name, at, inject.VolumeNoToken)
		case !injected && (len(at) != 1 || !strings.HasPrefix(at[0], "kube-api-access-")):
			t.Errorf("pod %s: the app's container %s mounts %v at the token's path, want the API server's kube-api-access-* volume", p.Name, c.Name, at)
		}
	}
}

// A bad annotation makes pod creation fail with our message naming every problem; a pod that
// already carries the status annotation is not injected twice.
func TestInjectDenialAndIdempotence(t *testing.T) {
	s, in := webhook(t)
	ctx := context.Background()
	ns := namespace(t, s, "inject-deny")
	deniedBefore := in.Metric(t, "kratos_injector_denials_total")
	bad := kwokPod("bad", map[string]string{injectLabel: "true"}, map[string]string{
		"kratos-injector.io/features":   "local-idp,teleport",
		"kratos-injector.io/public-url": "not a url",
		"kratos-injector.io/colour":     "blue",
	})
	_, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, bad, createOpts)
	if err == nil {
		t.Fatal("pod with bad annotations was admitted")
	}
	for _, want := range []string{"kratos-injector.io/features", "teleport", "kratos-injector.io/public-url", "kratos-injector.io/colour"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("denial %q does not mention %q", err, want)
		}
	}
	if n := in.Metric(t, "kratos_injector_denials_total") - deniedBefore; n < 1 {
		t.Errorf("denials counted %v, want >= 1", n)
	}

	// Inject offline with the same core, then create: the webhook sees our status and leaves it.
	pre := kwokPod("pre", map[string]string{injectLabel: "true"}, nil)
	res, err := inject.Inject(pre, inject.Options{InjectorImage: testbed.InjectorImage, KratosImage: testbed.KratosImage})
	if err != nil {
		t.Fatal(err)
	}
	injected := res.Pod
	got, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, injected, createOpts)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := containerNames(got.Spec.InitContainers), containerNames(injected.Spec.InitContainers); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("already-injected pod changed by the webhook: init containers %v, want %v", a, b)
	}
	// The API server adds its service-account token volume; ours must be there exactly once.
	count := map[string]int{}
	for _, v := range got.Spec.Volumes {
		count[v.Name]++
	}
	for _, v := range injected.Spec.Volumes {
		if count[v.Name] != 1 {
			t.Errorf("volume %s appears %d times in the admitted pod, want once", v.Name, count[v.Name])
		}
	}
}

// realNodeSpec runs on the bed's real node: busybox app, the project's and Kratos's images.
func realNodeSpec(n *testbed.Node) corev1.PodSpec {
	return corev1.PodSpec{
		NodeSelector:                  map[string]string{"kubernetes.io/hostname": n.Name},
		TerminationGracePeriodSeconds: ptr(int64(1)),
		Containers: []corev1.Container{{Name: "app", Image: testbed.BusyboxImage,
			Command: []string{"sh", "-c", "exec sleep 3600"}}},
	}
}

// The injected pod really runs: the labelled Deployment's pod on the real node becomes Ready with
// the config the kratos-config init container (the project's own image) rendered from the pod's
// Secret volumes, and the admin API answers through a port-forward to 4434. SQLite default.
func TestInjectedPodRunsSQLite(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := namespace(t, s, "run-sqlite")
	dep := deployment("notes", 1, map[string]string{injectLabel: "true"}, nil, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app=notes")
	checkNoToken(t, pod) // and the kubelet ran the injected containers with it
	fw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, pod, 4434)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	if body := httpGet(t, ctx, fw.URL+"/admin/health/ready"); !strings.Contains(body, "ok") {
		t.Errorf("/admin/health/ready: %q", body)
	}
	// The rendered config is what Kratos runs: the built-in schemas are served.
	pub, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, pod, 4433)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var schemas []struct{ ID string }
	if err := json.Unmarshal([]byte(httpGet(t, ctx, pub.URL+"/schemas")), &schemas); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, sc := range schemas {
		ids[sc.ID] = true
	}
	if !ids["default"] || !ids["admin"] {
		t.Errorf("schemas served %v, want the built-in default and admin", schemas)
	}
}

// readyPod waits for the one pod matching selector to be Ready, with a report when it is not.
func readyPod(t testing.TB, ctx context.Context, s *stack, ns, selector string) *corev1.Pod {
	t.Helper()
	pods := waitPods(t, s.CP.Client, ns, selector, 60*time.Second, func(p []corev1.Pod) error {
		if len(p) == 0 {
			return fmt.Errorf("no pod yet")
		}
		return nil
	})
	pod, err := testbed.WaitPodReady(ctx, s.CP.Client, ns, pods[0].Name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// Postgres (the bed's, on the node's bridge address, password with URL specials) + SMTP
// (Mailpit) + one IdP: the pod becomes Ready, Kratos migrated the database, the provider shows in
// a login flow, and a recovery mail arrives with the configured sender.
func TestInjectedPodRunsPostgresSMTPIdP(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	p := postgres(t)
	m := mailpit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := namespace(t, s, "run-pg")
	db, err := p.NewDatabase(ctx, "inj", "s3cr@t:/?#%pw")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string]string{
		"db":             {"host": n.IP, "port": fmt.Sprint(db.Port), "username": db.User, "password": db.Password, "dbname": db.Name, "sslmode": "disable"},
		"smtp":           {"host": m.SMTPHost, "port": fmt.Sprint(m.SMTPPort), "transport_security": "none"},
		"github":         {"provider": "github", "client_id": "bed-client", "client_secret": "bed-client-secret"},
		"kratos-secrets": {"cookie": "cookie-secret-0123456789abcdef", "cipher": "0123456789abcdef0123456789abcdef", "default": "default-secret-0123456789abcdef"},
	}
	for name, data := range secrets {
		if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}, createOpts); err != nil {
			t.Fatal(err)
		}
	}
	ann := map[string]string{
		"kratos-injector.io/database-secret": "db",
		"kratos-injector.io/smtp-secret":     "smtp",
		"kratos-injector.io/idp-secrets":     "github",
		"kratos-injector.io/secrets-secret":  "kratos-secrets",
		"kratos-injector.io/migrate":         "auto",
		"kratos-injector.io/sender":          "Bed Identity <identity@bed.example>",
	}
	dep := deployment("shop", 1, map[string]string{injectLabel: "true"}, ann, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app=shop")
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, e := range c.Env {
			if strings.Contains(e.Value, db.Password) || strings.Contains(e.Value, "bed-client-secret") {
				t.Errorf("secret value in the pod spec (container %s env %s)", c.Name, e.Name)
			}
		}
		if strings.Contains(strings.Join(append(c.Command, c.Args...), " "), db.Password) {
			t.Errorf("secret value in container %s's command line", c.Name)
		}
	}
	if n, err := p.SQL(ctx, db.Name, "select count(*) from information_schema.tables where table_name = 'identities'"); err != nil || n != "1" {
		t.Fatalf("Kratos's tables in %s: %q %v (the migrate init container did not migrate the bed's Postgres)", db.Name, n, err)
	}
	adminFw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, pod, 4434)
	if err != nil {
		t.Fatal(err)
	}
	defer adminFw.Close()
	pubFw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, pod, 4433)
	if err != nil {
		t.Fatal(err)
	}
	defer pubFw.Close()
	if body := httpGet(t, ctx, adminFw.URL+"/admin/health/ready"); !strings.Contains(body, "ok") {
		t.Errorf("/admin/health/ready: %q", body)
	}

	// The IdP from its Secret shows in a fresh login flow.
	resp, err := http.Get(pubFw.URL + "/self-service/login/api")
	if err != nil {
		t.Fatal(err)
	}
	var flow struct {
		UI struct {
			Nodes []struct {
				Group      string         `json:"group"`
				Attributes map[string]any `json:"attributes"`
			} `json:"nodes"`
		} `json:"ui"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&flow)
	resp.Body.Close()
	var providers []string
	for _, nd := range flow.UI.Nodes {
		if nd.Group == "oidc" {
			providers = append(providers, fmt.Sprint(nd.Attributes["value"]))
		}
	}
	if strings.Join(providers, ",") != "github" {
		t.Errorf("login flow providers %v, want [github]", providers)
	}

	// An identity in Postgres, and a recovery mail through Mailpit with the configured sender.
	admin := kratosClient(adminFw.URL)
	email := "ada@bed.example"
	if _, _, err := admin.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(kratos.CreateIdentityBody{
		SchemaId: "default", Traits: map[string]any{"email": email}}).Execute(); err != nil {
		t.Fatal(err)
	}
	if n, _ := p.SQL(ctx, db.Name, "select count(*) from identities"); n != "1" {
		t.Errorf("identities in the bed's Postgres = %q, want 1", n)
	}
	public := kratosClient(pubFw.URL)
	rf, _, err := public.FrontendAPI.CreateNativeRecoveryFlow(ctx).Execute()
	if err != nil {
		t.Fatal(err)
	}
	body := kratos.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(&kratos.UpdateRecoveryFlowWithCodeMethod{Method: "code", Email: &email})
	if _, _, err := public.FrontendAPI.UpdateRecoveryFlow(ctx).Flow(rf.Id).UpdateRecoveryFlowBody(body).Execute(); err != nil {
		t.Fatal(err)
	}
	msg, err := m.WaitMessageTo(ctx, email)
	if err != nil {
		t.Fatalf("%v\n%s", err, testbed.PodReport(ctx, s.CP.Client, ns, pod.Name))
	}
	if msg.From.Address != "identity@bed.example" || msg.From.Name != "Bed Identity" {
		t.Errorf("recovery mail from %q <%s>, want the sender annotation", msg.From.Name, msg.From.Address)
	}
}

func kratosClient(url string) *kratos.APIClient {
	conf := kratos.NewConfiguration()
	conf.Servers = kratos.ServerConfigurations{{URL: url}}
	return kratos.NewAPIClient(conf)
}

// A database Secret the render refuses (a missing key; the malformed DSN of a careless user,
// whose unescaped % Kratos's driver cannot parse and would log in full on every retry; a host
// key that is a path) fails the kratos-config init container on the real node with one line
// naming the Secret and key, and the password appears nowhere in the pod's status (the leak
// scan after the suite then checks every log too).
func TestInjectedPodBadDatabaseSecret(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	const password = "N0t%Shared!pw"
	for _, tc := range []struct {
		name string
		data map[string]string
		want []string
	}{
		{"missing key", map[string]string{"host": n.IP, "port": "5432", "username": "kratos", "dbname": "kratos"},
			[]string{`"password"`}},
		{"malformed dsn", map[string]string{"dsn": "postgres://kratos:" + password + "@" + n.IP + ":5432/kratos?sslmode=disable"},
			[]string{`"dsn"`, "percent-encoded"}},
		{"host with a slash", map[string]string{"host": n.IP + "/kratos", "port": "5432", "username": "kratos",
			"password": password, "dbname": "kratos"}, []string{`"host"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ns := namespace(t, s, "run-baddb")
			if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pg-bad"},
				StringData: tc.data}, createOpts); err != nil {
				t.Fatal(err)
			}
			dep := deployment("broken", 1, map[string]string{injectLabel: "true"},
				map[string]string{"kratos-injector.io/database-secret": "pg-bad"}, realNodeSpec(n))
			if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
				t.Fatal(err)
			}
			pods := waitPods(t, s.CP.Client, ns, "app=broken", 60*time.Second, func(p []corev1.Pod) error {
				if len(p) == 0 {
					return fmt.Errorf("no pod yet")
				}
				return nil
			})
			var msg string
			pod, err := testbed.WaitPod(ctx, s.CP.Client, ns, pods[0].Name, 2*time.Minute, "failed in kratos-config", func(p *corev1.Pod) bool {
				st := instance.ContainerStatus(p, inject.ContainerConfig)
				if st == nil {
					return false
				}
				for _, term := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
					if term != nil && term.ExitCode != 0 {
						msg = term.Message
						return true
					}
				}
				return false
			})
			if err != nil {
				t.Fatal(err)
			}
			if instance.IsReady(pod) {
				t.Error("pod is Ready with a database Secret the render refuses")
			}
			for _, want := range append([]string{`"pg-bad"`}, tc.want...) {
				if !strings.Contains(msg, want) {
					t.Errorf("termination message %q does not say %s", msg, want)
				}
			}
			if strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Errorf("termination message is not one line: %q", msg)
			}
			if st := instance.ContainerStatus(pod, inject.ContainerKratos); st != nil && (st.State.Running != nil || st.State.Terminated != nil) {
				t.Errorf("Kratos started with a refused database Secret: %+v", st.State)
			}
			status, _ := json.Marshal(pod.Status)
			if strings.Contains(string(status), "N0t") || strings.Contains(string(status), "Shared") {
				t.Errorf("the pod's status holds the password: %s", status)
			}
			if got := instance.NotReadyReason(pod); !strings.HasPrefix(got, instance.ReasonRenderFailed) {
				t.Errorf("status reason %q, want the render failure", got)
			}
		})
	}
}

// Hundreds of opted-in pods created through the real API server (a Deployment scaled to 300 on
// kwok) are all injected with zero failures, while an unlabelled Deployment of the same size
// next to it never reaches the webhook (see docs/architecture.md, 'Opt-in label, fail closed').
func TestInjectAtScale(t *testing.T) {
	s, in := webhook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := namespace(t, s, "inject-scale")
	const n = 300
	injected0 := in.Metric(t, "kratos_injector_injections_total")
	denied0 := in.Metric(t, "kratos_injector_denials_total")
	errors0 := in.Metric(t, "controller_runtime_webhook_requests_total", `code="500"`)
	start := time.Now()
	for _, d := range []*appsv1.Deployment{
		deployment("many", n, map[string]string{injectLabel: "true"}, nil, kwokSpec()),
		deployment("plain-many", n, nil, nil, kwokSpec()),
	} {
		if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, d, createOpts); err != nil {
			t.Fatal(err)
		}
	}
	pods := waitPods(t, s.CP.Client, ns, "app=many", 4*time.Minute, podsRunning(n))
	plain := waitPods(t, s.CP.Client, ns, "app=plain-many", 4*time.Minute, podsRunning(n))
	t.Logf("%d injected + %d plain pods Running in %s", len(pods), len(plain), time.Since(start).Round(time.Millisecond))
	for _, p := range pods {
		if p.Annotations[inject.AnnotationStatus] == "" || len(p.Spec.InitContainers) == 0 {
			t.Fatalf("pod %s of the labelled Deployment is not injected", p.Name)
		}
	}
	for _, p := range plain {
		if p.Annotations[inject.AnnotationStatus] != "" {
			t.Fatalf("pod %s of the unlabelled Deployment was injected", p.Name)
		}
	}
	if got := in.Metric(t, "kratos_injector_injections_total") - injected0; got != n {
		t.Errorf("injections counted %v, want exactly %d (one per pod; the unlabelled ones never reach the webhook)", got, n)
	}
	if d := in.Metric(t, "kratos_injector_denials_total") - denied0; d != 0 {
		t.Errorf("%v denials during the scale test, want 0", d)
	}
	if e := in.Metric(t, "controller_runtime_webhook_requests_total", `code="500"`) - errors0; e != 0 {
		t.Errorf("%v webhook errors during the scale test, want 0", e)
	}
}
