package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// smokeKratosConfig runs Kratos on SQLite in the pod's in-memory emptyDir; the public port on
// the pod network, the admin port on the pod's loopback only.
const smokeKratosConfig = `version: v1.3.1
dsn: sqlite:///var/lib/sqlite/db.sqlite?_fk=true&mode=rwc
serve:
  public: {host: 0.0.0.0, port: 4433, base_url: "http://127.0.0.1:4433/"}
  admin: {host: 127.0.0.1, port: 4434, base_url: "http://127.0.0.1:4434/"}
identity:
  default_schema_id: default
  schemas: [{id: default, url: "file:///etc/config/identity.schema.json"}]
selfservice:
  default_browser_return_url: http://127.0.0.1:4455/
  methods:
    password: {enabled: true, config: {haveibeenpwned_enabled: false}}
secrets:
  default: [smoke-default-secret-0123456789]
  cipher: [32-LONG-SECRET-NOT-SECURE-AT-ALL]
`

// A pod with an init container, a native sidecar running the real Kratos image (SQLite migrated
// by an init container into an in-memory emptyDir, config from a Secret volume) with startup and
// readiness probes, and an app container becomes Ready on the real node; the app starts only
// after the sidecar is ready; exec and port-forward reach the Kratos container.
func TestNodeNativeSidecarExecPortForward(t *testing.T) {
	s, n := node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := namespace(t, s, "smoke-node")
	schema := mustRead(t, "testdata/smoke.schema.json")
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "kratos-config"},
		StringData: map[string]string{"kratos.yaml": smokeKratosConfig, "identity.schema.json": string(schema)},
	}, createOpts); err != nil {
		t.Fatal(err)
	}
	always := corev1.ContainerRestartPolicyAlways
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(4433)}},
			PeriodSeconds: 1, FailureThreshold: 60}
	}
	mounts := []corev1.VolumeMount{{Name: "config", MountPath: "/etc/config", ReadOnly: true}, {Name: "data", MountPath: "/var/lib/sqlite"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sidecar", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName: n.Name,
			InitContainers: []corev1.Container{
				{Name: "init", Image: testbed.BusyboxImage, Command: []string{"sh", "-c", "date +%s > /var/lib/sqlite/init-ran"},
					VolumeMounts: mounts[1:]},
				{Name: "migrate", Image: testbed.KratosImage, Args: []string{"migrate", "sql", "-e", "--yes", "-c", "/etc/config/kratos.yaml"},
					VolumeMounts: mounts},
				{Name: "kratos", Image: testbed.KratosImage, RestartPolicy: &always,
					Args:         []string{"serve", "-c", "/etc/config/kratos.yaml", "--dev", "--sqa-opt-out"},
					Ports:        []corev1.ContainerPort{{Name: "public", ContainerPort: 4433}, {Name: "admin", ContainerPort: 4434}},
					StartupProbe: probe("/health/ready"), ReadinessProbe: probe("/health/ready"),
					VolumeMounts: mounts},
			},
			// The app fails (and would be restarted) if Kratos does not answer when it starts.
			Containers: []corev1.Container{{Name: "app", Image: testbed.BusyboxImage,
				Command:      []string{"sh", "-c", "test -f /var/lib/sqlite/init-ran && wget -qO- http://127.0.0.1:4433/health/ready && exec sleep 3600"},
				VolumeMounts: mounts[1:]}},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kratos-config"}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
			},
			TerminationGracePeriodSeconds: ptr(int64(1)),
		},
	}
	if _, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, pod, createOpts); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := testbed.WaitPodReady(ctx, s.CP.Client, ns, "sidecar", 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod Ready in %s", time.Since(start).Round(time.Millisecond))
	var kratosStarted, appStarted time.Time
	for _, st := range got.Status.InitContainerStatuses {
		if st.Name == "kratos" {
			if !st.Ready || st.State.Running == nil {
				t.Errorf("kratos sidecar not running and ready: %+v", st.State)
			} else {
				kratosStarted = st.State.Running.StartedAt.Time
			}
		}
	}
	for _, st := range got.Status.ContainerStatuses {
		if st.Name == "app" {
			if st.RestartCount != 0 {
				t.Errorf("app restarted %d times: it started before Kratos was ready", st.RestartCount)
			}
			if st.State.Running != nil {
				appStarted = st.State.Running.StartedAt.Time
			}
		}
	}
	if kratosStarted.IsZero() || appStarted.IsZero() || appStarted.Before(kratosStarted) {
		t.Errorf("app started %v, kratos sidecar started %v: want app after sidecar", appStarted, kratosStarted)
	}

	// exec (WebSocket, SPDY fallback) runs `kratos version` in the Kratos container.
	var out, errOut bytes.Buffer
	if err := instance.Exec(ctx, s.CP.Config, s.CP.Client, got, "kratos", []string{"kratos", "version"}, &out, &errOut); err != nil {
		t.Fatalf("exec kratos version: %v (stderr %q)", err, errOut.String())
	}
	if !strings.Contains(out.String(), "v1.3.1") {
		t.Errorf("kratos version printed %q, want v1.3.1", out.String())
	}

	// port-forward (WebSocket, SPDY fallback) to 4434 reaches the admin API on the pod's loopback.
	fw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, got, 4434)
	if err != nil {
		t.Fatalf("port-forward: %v", err)
	}
	defer fw.Close()
	body := httpGet(t, ctx, fw.URL+"/admin/health/alive")
	if !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("/admin/health/alive through port-forward: %q", body)
	}
}

// A pod on the real node reaches the bed's Postgres on the bridge address (pods cannot reach the
// host's loopback): the real Kratos image migrates a database there.
func TestNodePodReachesPostgres(t *testing.T) {
	s, n := node(t)
	p := postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := namespace(t, s, "smoke-pg")
	db, err := p.NewDatabase(ctx, "nodepg", "p@ss:w/o?r#d%")
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:      n.Name,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "kratos", Image: testbed.KratosImage,
				Args: []string{"migrate", "sql", "-e", "--yes"},
				Env:  []corev1.EnvVar{{Name: "DSN", Value: db.DSN(n.IP)}}}},
		},
	}
	if _, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, pod, createOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := testbed.WaitPod(ctx, s.CP.Client, ns, "migrate", 2*time.Minute, "Succeeded", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := p.SQL(ctx, db.Name, "select count(*) from information_schema.tables where table_name in ('identities','sessions','networks')"); err != nil || n != "3" {
		t.Errorf("Kratos's tables in %s after the pod's migration: %q, %v", db.Name, n, err)
	}
}

// A tiny TLS webhook running as a pod on the real node, registered by service: (not URL), is
// called by the API server for a labelled pod. Also checks the bed's ranges stay in the machine.
func TestNodeWebhookByService(t *testing.T) {
	s, n := node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bh, err := testbed.Blackholes()
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{testbed.ServiceCIDR, testbed.KwokPodCIDR} {
		if !strings.Contains(bh, cidr) {
			t.Errorf("no blackhole route for %s (have %q): a stray packet would leave the machine", cidr, bh)
		}
	}
	for _, addr := range []string{"10.96.0.10", "10.244.1.1"} {
		if r, err := testbed.RouteGet(addr); err == nil {
			t.Errorf("the kernel routes %s: %q; want no route out of the machine", addr, r)
		}
	}
	ns := namespace(t, s, "smoke-svc")
	dir := t.TempDir()
	if err := s.CP.CA.WriteServing(dir, "smokewebhook", "smokewebhook."+ns+".svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "smokewebhook-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": mustRead(t, dir+"/tls.crt"), "tls.key": mustRead(t, dir+"/tls.key")},
	}, createOpts); err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{"app": "smokewebhook"}
	if _, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "smokewebhook", Namespace: ns, Labels: lbl},
		Spec: corev1.PodSpec{
			NodeName: n.Name,
			Containers: []corev1.Container{{Name: "webhook", Image: testbed.SmokeWebhookImage,
				Env:            []corev1.EnvVar{{Name: "TLS_DIR", Value: "/tls"}},
				Ports:          []corev1.ContainerPort{{ContainerPort: 8443}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8443)}}, PeriodSeconds: 1},
				VolumeMounts:   []corev1.VolumeMount{{Name: "tls", MountPath: "/tls", ReadOnly: true}}}},
			Volumes:                       []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "smokewebhook-tls"}}}},
			TerminationGracePeriodSeconds: ptr(int64(1)),
		},
	}, createOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CP.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "smokewebhook"},
		Spec:       corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(8443)}}},
	}, createOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := testbed.WaitPodReady(ctx, s.CP.Client, ns, "smokewebhook", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	port := int32(443)
	if _, err := s.CP.RegisterWebhook(ctx, testbed.WebhookOptions{
		Name:              "smoke-svc-" + ns,
		Service:           &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "smokewebhook", Path: ptr("/mutate"), Port: &port},
		CABundle:          s.CP.CA.CertPEM,
		ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"smoke-svc": "true"}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
	}); err != nil {
		t.Fatal(err)
	}
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		got, err := s.CP.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("labelled-%d", i), Labels: map[string]string{"smoke-svc": "true"}},
			Spec: corev1.PodSpec{NodeName: s.KwokNode, Tolerations: []corev1.Toleration{testbed.KwokToleration},
				Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Annotations["smoke.kratos-injector.io/from-pod"] == "smokewebhook" {
			break
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("webhook pod never called through its Service (last: %v)\n%s", last, testbed.PodReport(ctx, s.CP.Client, ns, "smokewebhook"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func httpGet(t testing.TB, ctx context.Context, url string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
