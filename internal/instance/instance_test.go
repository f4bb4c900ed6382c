package instance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/instance/clustertest"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The tests run against a real kube-apiserver (RBAC, audit log) with kwok as the node agent:
// kwok serves the API server's port-forward and exec streams (to a local HTTP server, as local
// processes). This API server has its WebSocket stream translation turned off, as an API server
// before v1.30 has: it hands the WebSocket request to the node as is, the node does not speak
// the tunnelling protocol the client asks for, and the plugin falls back to SPDY — which the
// audit log shows. The cli package's tests use a current API server, where WebSocket is used.
var cluster *clustertest.Cluster

func TestMain(m *testing.M) {
	clustertest.Main(m, clustertest.Options{
		FeatureGates: []string{"PortForwardWebsockets=false", "TranslateStreamCloseWebsocketRequests=false"},
	}, &cluster)
}

// running is the status of a Ready injected pod.
func running() corev1.PodStatus { return clustertest.ReadyStatus() }

func status(mutate ...func(*corev1.PodStatus)) corev1.PodStatus {
	s := running()
	for _, m := range mutate {
		m(&s)
	}
	return s
}

func notReady(s *corev1.PodStatus) { s.Conditions[1].Status = corev1.ConditionFalse }

// find is instance.Find as the admin.
func find(t *testing.T, sel instance.Selector) (*instance.Instance, error) {
	t.Helper()
	return instance.Find(clustertest.Context(t), cluster.Client, sel)
}

func TestFindNoInjectedPod(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	elsewhere := cluster.Namespace(t, "elsewhere")
	cluster.RunPod(t, clustertest.Pod(elsewhere, "other", "x"))
	_, err := find(t, instance.Selector{Namespace: ns})
	if !errors.Is(err, instance.ErrNoInstance) {
		t.Fatalf("got %v, want ErrNoInstance", err)
	}
	want := "no pod labelled kratos-injector.io/instance in namespace " + ns + ": label a workload with kratos-injector.io/inject=true"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestFindSeveralInstances(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	for _, p := range [][2]string{{"web-1", "web"}, {"web-2", "web"}, {"admin-1", "admin"}} {
		cluster.RunPod(t, clustertest.Pod(ns, p[0], p[1]))
	}

	_, err := find(t, instance.Selector{Namespace: ns})
	if !errors.Is(err, instance.ErrSeveralInstances) || !strings.Contains(err.Error(), "admin, web") || !strings.Contains(err.Error(), "--instance") {
		t.Fatalf("got %v, want ErrSeveralInstances naming admin, web and --instance", err)
	}
	t.Logf("%v", err)

	in, err := find(t, instance.Selector{Namespace: ns, Instance: "web"})
	if err != nil || in.Name != "web" || len(in.Pods) != 2 {
		t.Fatalf("--instance web: %+v, %v", in, err)
	}
	in, err = find(t, instance.Selector{Namespace: ns, LabelSelector: "app=admin"})
	if err != nil || in.Name != "admin" || len(in.Pods) != 1 {
		t.Fatalf("-l app=admin: %+v, %v", in, err)
	}

	_, err = find(t, instance.Selector{Namespace: ns, Instance: "shop"})
	if !errors.Is(err, instance.ErrNoInstance) || !strings.Contains(err.Error(), "instances there: admin, web") {
		t.Fatalf("--instance shop: got %v, want ErrNoInstance listing admin, web", err)
	}
}

// TestFindForbidden: alice has no right in the namespace; the API server's RBAC refuses the list.
func TestFindForbidden(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	_, err := instance.Find(clustertest.Context(t), cluster.Clientset(t, "alice"), instance.Selector{Namespace: ns})
	if !errors.Is(err, instance.ErrForbidden) || !strings.Contains(err.Error(), `you need "list" on "pods" in namespace `+ns) {
		t.Fatalf("got %v, want the missing permission", err)
	}
	t.Logf("%v", err)
}

func TestReadyPod(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	cluster.PodWithStatus(t, clustertest.Pod(ns, "web-old", "web"), running(), false)
	time.Sleep(1100 * time.Millisecond) // creation timestamps have a one-second resolution
	cluster.PodWithStatus(t, clustertest.Pod(ns, "web-unready", "web"), status(notReady), false)
	going := cluster.PodWithStatus(t, clustertest.Pod(ns, "web-going", "web"), running(), false)
	cluster.Terminate(t, going)

	in, err := find(t, instance.Selector{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range in.Pods {
		order = append(order, p.Name)
	}
	// Not terminating first, then newest first.
	if strings.Join(order, " ") != "web-unready web-old web-going" {
		t.Errorf("pods in order %q", order)
	}
	got, err := in.ReadyPod()
	if err != nil || got.Name != "web-old" {
		t.Fatalf("ReadyPod() = %v, %v; want web-old", got, err)
	}

	// A broken app container does not lock the operator out: Kratos's own readiness counts.
	appDown := func(s *corev1.PodStatus) {
		notReady(s)
		s.ContainerStatuses[0].Ready = false
		s.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}
	ns2 := cluster.Namespace(t, "shop")
	cluster.PodWithStatus(t, clustertest.Pod(ns2, "web-app-down", "web"), status(appDown), false)
	in, err = find(t, instance.Selector{Namespace: ns2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := in.ReadyPod(); err != nil || got.Name != "web-app-down" {
		t.Fatalf("app down, Kratos ready: ReadyPod() = %v, %v", got, err)
	}
}

func TestNotReadyReasons(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mutate      func(*corev1.PodStatus)
		unscheduled bool
		want        []string
	}{
		{"render failed", func(s *corev1.PodStatus) {
			notReady(s)
			s.Phase = corev1.PodPending
			s.InitContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}}
			s.InitContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", Message: "Secret db has no key dsn, uri or host"}}
			s.InitContainerStatuses[1].Ready = false
			s.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
			s.ContainerStatuses[0].Ready = false
			s.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
		}, false, []string{"render failed: Secret db has no key dsn, uri or host"}},
		{"not migrated", clustertest.Unmigrated, false, []string{"sidecar container kratos is running but not ready", "kubectl kratos migrate"}},
		{"unschedulable", func(s *corev1.PodStatus) {
			*s = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: "Unschedulable", Message: "0/1 nodes are available: 1 Insufficient memory."}}}
		}, true, []string{"not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient memory."}},
		{"image pull", func(s *corev1.PodStatus) {
			notReady(s)
			s.InitContainerStatuses[1].Ready = false
			s.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "oryd/kratos:v9"`}}
		}, false, []string{`sidecar container kratos waiting: ImagePullBackOff: Back-off pulling image "oryd/kratos:v9"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := cluster.Namespace(t, "shop")
			cluster.PodWithStatus(t, clustertest.Pod(ns, "web-1", "web"), status(tc.mutate), tc.unscheduled)
			in, err := find(t, instance.Selector{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			_, err = in.ReadyPod()
			if !errors.Is(err, instance.ErrNotReady) {
				t.Fatalf("got %v, want ErrNotReady", err)
			}
			t.Logf("%v", err)
			for _, w := range append(tc.want, "pod web-1:") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestKratosRunningPodAcceptsUnready(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.PodStatus)
	}{
		// What a real kubelet reports: the native sidecar's startup probe has not passed, so the
		// pod is still initializing (Pending).
		{"initializing", clustertest.Unmigrated},
		// Kratos started once (its startup probe passed) and is unready now.
		{"running", func(s *corev1.PodStatus) { notReady(s); s.InitContainerStatuses[1].Ready = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := cluster.Namespace(t, "shop")
			cluster.PodWithStatus(t, clustertest.Pod(ns, "web-1", "web"), status(tc.mutate), false)
			in, err := find(t, instance.Selector{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := in.ReadyPod(); err == nil {
				t.Fatal("an unmigrated pod counted as Ready")
			}
			if p, err := in.KratosRunningPod(); err != nil || p.Name != "web-1" {
				t.Fatalf("KratosRunningPod() = %v, %v", p, err)
			}
		})
	}

	ns := cluster.Namespace(t, "shop")
	crashing := func(s *corev1.PodStatus) {
		notReady(s)
		s.InitContainerStatuses[1].Ready = false
		s.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}
	cluster.PodWithStatus(t, clustertest.Pod(ns, "web-2", "web"), status(crashing), false)
	going := cluster.PodWithStatus(t, clustertest.Pod(ns, "web-3", "web"), running(), false)
	cluster.Terminate(t, going)
	in, err := find(t, instance.Selector{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.KratosRunningPod()
	if !errors.Is(err, instance.ErrNotReady) || !strings.Contains(err.Error(), "pod web-2: container kratos crashing (CrashLoopBackOff") ||
		!strings.Contains(err.Error(), "pod web-3: terminating") {
		t.Fatalf("crashing Kratos, terminating pod: got %v", err)
	}
	t.Logf("%v", err)
}

// forward opens a port-forward as the admin, retrying while kwok has not yet loaded the
// PortForward object (a request through a forward kwok cannot serve fails).
func forward(t *testing.T, pod *corev1.Pod, port int, path string) (*instance.Forward, time.Duration) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		start := time.Now()
		f, err := instance.PortForward(clustertest.Context(t), cluster.Config("admin"), cluster.Client, pod, port)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(f.URL + path)
		if err == nil {
			resp.Body.Close()
			return f, took
		}
		err = f.Explain(err)
		f.Close()
		if time.Now().After(deadline) {
			t.Fatalf("port-forward to %s: %v", pod.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// streamRequests are the audited pods/<sub> requests of ns: "GET" (WebSocket upgrade) or "POST"
// (SPDY) with the response code.
func streamRequests(t *testing.T, ns, sub string) []string {
	var out []string
	for _, e := range cluster.Audit(t, ns) {
		if e.ObjectRef.Subresource != sub {
			continue
		}
		method := map[string]string{"get": "GET", "create": "POST"}[e.Verb]
		code := 0
		if e.ResponseStatus != nil {
			code = e.ResponseStatus.Code
		}
		out = append(out, fmt.Sprintf("%s %d", method, code))
	}
	return out
}

func TestPortForward(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	ns := cluster.Namespace(t, "shop")
	p := cluster.RunPod(t, clustertest.Pod(ns, "web-1", "web"))
	cluster.Forward(t, p, 4434, strings.TrimPrefix(backend.URL, "http://"))

	f, took := forward(t, p, 4434, "/")
	t.Logf("port-forward ready in %s (through kube-apiserver and kwok)", took)
	if !strings.HasPrefix(f.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %q is not on 127.0.0.1", f.URL)
	}
	for i := 0; i < 3; i++ {
		resp, err := http.Get(f.URL + "/admin/health/ready")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello from /admin/health/ready" {
			t.Fatalf("through the forward: %q", b)
		}
	}
	f.Close()
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(f.URL, "http://"), time.Second); err == nil {
		t.Fatal("local port still listens after Close")
	}
	// The WebSocket attempt was unusable here (see TestMain); the plugin fell back to SPDY.
	reqs := streamRequests(t, ns, "portforward")
	t.Logf("pods/portforward requests: %q", reqs)
	last := reqs[len(reqs)-1]
	if len(reqs) < 2 || !strings.HasPrefix(reqs[len(reqs)-2], "GET ") || last != "POST 101" {
		t.Fatalf("want a WebSocket GET then an SPDY POST upgraded (101), got %q", reqs)
	}
}

func TestPortForwardExplainsUnreachablePort(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	p := cluster.RunPod(t, clustertest.Pod(ns, "web-1", "web"))
	closed := clustertest.ClosedAddr(t) // nothing listens behind port 4434
	cluster.Forward(t, p, 4434, closed)
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := instance.PortForward(clustertest.Context(t), cluster.Config("admin"), cluster.Client, p, 4434)
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&http.Client{Timeout: 5 * time.Second}).Get(f.URL + "/")
		if err == nil {
			t.Fatal("a request through a forward to nothing succeeded")
		}
		err = f.Explain(err)
		f.Close()
		if strings.Contains(err.Error(), "no forward found") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond) // kwok has not loaded the PortForward yet
			continue
		}
		t.Logf("%v", err)
		// kwok words it "failed to dial ADDR: connection refused" where a kubelet says "failed
		// to connect to localhost:4434 inside namespace".
		if !strings.Contains(err.Error(), "error forwarding port 4434") || !strings.Contains(err.Error(), "connection refused") ||
			!strings.Contains(err.Error(), "pod web-1") {
			t.Fatalf("explained error %q does not say the pod's port refused", err)
		}
		return
	}
}

// TestStreamsForbidden: alice may list and get pods but not open port-forwards or execs.
func TestStreamsForbidden(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	p := cluster.RunPod(t, clustertest.Pod(ns, "web-1", "web"))
	cluster.Grant(t, ns, "pod-reader", "alice", clustertest.Rule([]string{"pods"}, "get", "list"))
	cfg, cs := cluster.Config("alice"), cluster.Clientset(t, "alice")
	_, err := instance.PortForward(clustertest.Context(t), cfg, cs, p, 4434)
	if !errors.Is(err, instance.ErrForbidden) || !strings.Contains(err.Error(), `you need "create" on "pods/portforward" in namespace `+ns) {
		t.Fatalf("port-forward: got %v", err)
	}
	t.Logf("%v", err)
	err = instance.Exec(clustertest.Context(t), cfg, cs, p, inject.ContainerKratos, []string{"true"}, io.Discard, io.Discard)
	if !errors.Is(err, instance.ErrForbidden) || !strings.Contains(err.Error(), `you need "create" on "pods/exec" in namespace `+ns) {
		t.Fatalf("exec: got %v", err)
	}
	t.Logf("%v", err)
}

func TestExec(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	p := cluster.RunPod(t, clustertest.Pod(ns, "web-1", "web"))
	dir := t.TempDir()
	// Each container of the pod runs its execs with its own environment: the output shows that
	// the exec reached the pod and container asked for.
	cluster.Exec(t, p,
		clustertest.ExecTarget{Containers: []string{inject.ContainerKratos}, WorkDir: dir, Env: map[string]string{"EXEC_TARGET": ns + "/web-1/kratos"}},
		clustertest.ExecTarget{Containers: []string{"app"}, WorkDir: dir, Env: map[string]string{"EXEC_TARGET": ns + "/web-1/app"}})

	// The command line reaches the process as given (no shell splitting), stdout and stderr
	// apart.
	cmd := []string{"sh", "-c", `echo "$EXEC_TARGET in $PWD: $*"; echo "applied 3 migrations"; echo "a warning" >&2`,
		"sh", "migrate", "sql", "-c", "/etc/kratos/my config.yaml"}
	var out, errOut bytes.Buffer
	deadline := time.Now().Add(20 * time.Second)
	for {
		out.Reset()
		errOut.Reset()
		err := instance.Exec(clustertest.Context(t), cluster.Config("admin"), cluster.Client, p, inject.ContainerKratos, cmd, &out, &errOut)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "no exec found") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // kwok has not loaded the Exec yet
	}
	wantOut := fmt.Sprintf("%s/web-1/kratos in %s: migrate sql -c /etc/kratos/my config.yaml\napplied 3 migrations\n", ns, dir)
	if out.String() != wantOut || errOut.String() != "a warning\n" {
		t.Fatalf("stdout %q, stderr %q; want stdout %q", out.String(), errOut.String(), wantOut)
	}
	out.Reset()
	if err := instance.Exec(clustertest.Context(t), cluster.Config("admin"), cluster.Client, p, "app", []string{"sh", "-c", "echo $EXEC_TARGET"}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != ns+"/web-1/app\n" {
		t.Fatalf("exec in container app reached %q", out.String())
	}

	// A command that exits non-zero is an error. (A kubelet passes the exit code on, which
	// Exec returns as *ExitError — the e2e suite checks that on the real node; kwok reports
	// only the text "exit status N".)
	err := instance.Exec(clustertest.Context(t), cluster.Config("admin"), cluster.Client, p, inject.ContainerKratos, []string{"sh", "-c", "exit 3"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "pod web-1") {
		t.Fatalf("exit 3: got %v", err)
	}
	t.Logf("%v", err)
	t.Logf("pods/exec requests: %q", streamRequests(t, ns, "exec"))
}

// impostors are pods that carry the instance label shop without being injected by
// kratos-injector, each missing something else the injector makes; every one of them is Ready,
// so only the check for injection keeps the plugin away from them.
func impostors(ns string) map[string]*corev1.Pod {
	labelOnly := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "evil-label-only", Namespace: ns, Labels: map[string]string{inject.LabelInstance: "shop"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: testbed.BusyboxImage}}},
	}
	noStatus := clustertest.Pod(ns, "evil-no-status", "shop") // the opt-in label, the shape, no status
	delete(noStatus.Annotations, inject.AnnotationStatus)
	badStatus := clustertest.Pod(ns, "evil-bad-status", "shop")
	badStatus.Annotations[inject.AnnotationStatus] = "trust me"
	notOptedIn := clustertest.Pod(ns, "evil-not-opted-in", "shop") // copied status, never went through the webhook
	delete(notOptedIn.Labels, inject.LabelInject)
	notServe := clustertest.Pod(ns, "evil-not-serve", "shop")
	notServe.Spec.InitContainers[1].Command, notServe.Spec.InitContainers[1].Args = []string{"sh"}, []string{"-c", "nc -lk -p 4434"}
	notSidecar := clustertest.Pod(ns, "evil-not-sidecar", "shop")
	notSidecar.Spec.InitContainers[1].RestartPolicy = nil
	noKratos := clustertest.Pod(ns, "evil-no-kratos", "shop")
	noKratos.Spec.InitContainers[1].Name = "kratos-ish"
	out := map[string]*corev1.Pod{}
	for _, p := range []*corev1.Pod{labelOnly, noStatus, badStatus, notOptedIn, notServe, notSidecar, noKratos} {
		out[p.Name] = p
	}
	return out
}

// TestImpostorNeverChosen: pods newer than the injected one, Ready, labelled with its instance,
// but not injected by kratos-injector: neither ReadyPod (the admin API, which receives
// passwords) nor KratosRunningPod (migrate) ever picks one, and --instance shop does not either.
func TestImpostorNeverChosen(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	cluster.PodWithStatus(t, clustertest.Pod(ns, "shop-real", "shop"), running(), false)
	time.Sleep(1100 * time.Millisecond) // creation timestamps have a one-second resolution: the impostors are newer
	for _, p := range impostors(ns) {
		cluster.PodWithStatus(t, p, running(), false)
	}
	for _, sel := range []instance.Selector{{Namespace: ns}, {Namespace: ns, Instance: "shop"}, {Namespace: ns, LabelSelector: "app=shop"}} {
		in, err := find(t, sel)
		if err != nil {
			t.Fatalf("%+v: %v", sel, err)
		}
		if p, err := in.ReadyPod(); err != nil || p.Name != "shop-real" {
			t.Errorf("%+v: ReadyPod() = %v, %v; want shop-real", sel, podName(p), err)
		}
		if p, err := in.KratosRunningPod(); err != nil || p.Name != "shop-real" {
			t.Errorf("%+v: KratosRunningPod() = %v, %v; want shop-real", sel, podName(p), err)
		}
		var got []string
		for _, p := range in.Pods {
			got = append(got, p.Name)
		}
		if len(got) != 1 || got[0] != "shop-real" {
			t.Fatalf("%+v: instance pods %q, want only shop-real", sel, got)
		}
	}

	// With the injected pod not Ready, the error names the impostors as ignored instead of
	// falling back to them.
	ns2 := cluster.Namespace(t, "shop")
	cluster.PodWithStatus(t, clustertest.Pod(ns2, "shop-real", "shop"), status(notReady, func(s *corev1.PodStatus) {
		s.InitContainerStatuses[1].Ready = false
	}), false)
	cluster.PodWithStatus(t, impostors(ns2)["evil-no-status"], running(), false)
	in, err := find(t, instance.Selector{Namespace: ns2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := in.ReadyPod()
	if !errors.Is(err, instance.ErrNotReady) || !strings.Contains(err.Error(), "pod evil-no-status: not injected by kratos-injector: ignored (no kratos-injector.io/status annotation)") {
		t.Fatalf("ReadyPod() = %v, %v; want ErrNotReady naming evil-no-status as ignored", podName(p), err)
	}
	t.Logf("%v", err)
}

// TestOnlyImpostors: with nothing but a pod that carries the label, Find refuses and says why
// the pod was not taken; an impostor of another instance name makes no instance of its own
// (neither an ambiguity nor a name in the error).
func TestOnlyImpostors(t *testing.T) {
	ns := cluster.Namespace(t, "shop")
	cluster.PodWithStatus(t, impostors(ns)["evil-label-only"], running(), false)
	for _, sel := range []instance.Selector{{Namespace: ns}, {Namespace: ns, Instance: "shop"}} {
		in, err := find(t, sel)
		if !errors.Is(err, instance.ErrNoInstance) {
			t.Fatalf("%+v: got %s, %v; want ErrNoInstance", sel, instanceName(in), err)
		}
		for _, want := range []string{"no pod injected by kratos-injector in namespace " + ns,
			"pod evil-label-only carries kratos-injector.io/instance=shop but was not injected by kratos-injector: ignored (not labelled kratos-injector.io/inject=true)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: error %q does not say %q", sel, err, want)
			}
		}
		t.Logf("%v", err)
	}

	ns2 := cluster.Namespace(t, "shop")
	cluster.PodWithStatus(t, clustertest.Pod(ns2, "web-1", "web"), running(), false)
	decoy := impostors(ns2)["evil-bad-status"]
	decoy.Labels[inject.LabelInstance] = "aaa" // sorts before web
	cluster.PodWithStatus(t, decoy, running(), false)
	in, err := find(t, instance.Selector{Namespace: ns2})
	if err != nil || in.Name != "web" {
		t.Fatalf("Find() = %s, %v; want instance web (the impostor of aaa is no instance)", instanceName(in), err)
	}
}

func instanceName(in *instance.Instance) string {
	if in == nil {
		return "<nil>"
	}
	var pods []string
	for _, p := range in.Pods {
		pods = append(pods, p.Name)
	}
	return fmt.Sprintf("instance %s (pods %s)", in.Name, strings.Join(pods, ", "))
}

func podName(p *corev1.Pod) string {
	if p == nil {
		return "<nil>"
	}
	return p.Name
}

// TestPortForwardDeadline: an API server that takes the port-forward request and never answers
// (a stand-in on 127.0.0.1) fails PortForwardWithin after its timeout, with ErrTimeout and one
// line that says what was not established.
func TestPortForwardDeadline(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int64
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) })
	cfg := &rest.Config{Host: hung.URL}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := clustertest.Pod("shop", "web-1", "web")
	start := time.Now()
	f, err := instance.PortForwardWithin(clustertest.Context(t), cfg, cs, pod, 4434, 300*time.Millisecond)
	took := time.Since(start)
	if err == nil {
		f.Close()
		t.Fatal("a port-forward through an API server that never answers was established")
	}
	want := "port-forward to pod web-1 in namespace shop: not established within 300ms"
	if !errors.Is(err, instance.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), want) ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v; want ErrTimeout, one line starting %q", err, want)
	}
	if took > 10*time.Second || requests.Load() == 0 {
		t.Fatalf("returned after %s, %d requests reached the stand-in", took, requests.Load())
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if instance.DefaultForwardTimeout != 30*time.Second {
		t.Errorf("DefaultForwardTimeout %s, want 30s", instance.DefaultForwardTimeout)
	}
}

// TestPortForwardInterrupted: Ctrl-C while a request is on its way through a port-forward
// (cancelling the context PortForward was given, as the plugin's signal handling does) ends the
// forward by itself: the request fails instead of hanging, the local port refuses connections,
// Close returns, and no goroutine of the forward is left.
func TestPortForwardInterrupted(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // the answer never comes
		case <-r.Context().Done():
		case <-release:
		}
	}))
	ns := cluster.Namespace(t, "shop")
	p := cluster.RunPod(t, clustertest.Pod(ns, "web-1", "web"))
	cluster.Forward(t, p, 4434, strings.TrimPrefix(backend.URL, "http://"))
	f, _ := forward(t, p, 4434, "/ready") // kwok serves the forward: this one is closed again
	f.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	// Every goroutine that runs now (the API server clients', the backend's) is the baseline.
	baseline := goleak.IgnoreCurrent()

	ctx, interrupt := context.WithCancel(clustertest.Context(t))
	defer interrupt()
	f, err := instance.PortForward(ctx, cluster.Config("admin"), cluster.Client, p, 4434)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(f.URL, "http://")
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	failed := make(chan error, 1)
	go func() {
		resp, err := hc.Get(f.URL + "/admin/identities")
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the request did not reach the backend through the forward")
	}

	interrupt() // Ctrl-C
	select {
	case err := <-failed:
		if err == nil {
			t.Error("the request through the interrupted forward succeeded")
		}
		t.Logf("the request in flight: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight still hangs 10s after the interrupt")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Logf("local port after the interrupt: %v", err)
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("local port %s still accepts connections 10s after the interrupt", addr)
		}
	}
	closed := make(chan struct{})
	go func() { f.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s of the interrupt")
	}
	hc.CloseIdleConnections()
	close(release)
	backend.Close() // its goroutines for the forwarded connection, if kwok left it open
	noLeftoverGoroutines(t, baseline)
}

// noLeftoverGoroutines waits (up to 40 s) until every goroutine not in baseline has ended, and
// fails with the stacks of those that remain.
func noLeftoverGoroutines(t *testing.T, baseline goleak.Option) {
	t.Helper()
	var err error
	// 40 s: client-go's port-forward may still wait for a stream it asked for until its own
	// 30 s createStreamResponseTimeout (k8s.io/streaming spdy) runs out; that goroutine ends by
	// itself, a leak does not.
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = goleak.Find(baseline); err == nil {
			return
		}
	}
	t.Fatalf("goroutines left behind: %v", err)
}
