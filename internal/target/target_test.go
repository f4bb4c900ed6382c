package target_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/target"
	"github.com/kratos-injector/kratos-injector/internal/target/apitest"
)

const ns = "shop"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// pod is an injected pod with a native-sidecar Kratos, Ready unless changed by mutate.
func pod(name, instance string, mutate ...func(*corev1.Pod)) corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{target.InstanceLabel: instance, "app": instance},
			CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000, 0))},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: target.ConfigContainer},
				{Name: target.KratosContainer, RestartPolicy: &always, Args: []string{"serve", "-c", "/etc/kratos/kratos.yaml"}},
			},
			Containers: []corev1.Container{{Name: "app"}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: target.ConfigContainer, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
				{Name: target.KratosContainer, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
	for _, m := range mutate {
		m(&p)
	}
	return p
}

func notReady(p *corev1.Pod) { p.Status.Conditions[1].Status = corev1.ConditionFalse }

func clientset(t *testing.T, api *apitest.Server) kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(api.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestFindNoInjectedPod(t *testing.T) {
	api := apitest.New(t)
	p := pod("other", "x")
	p.Namespace = "elsewhere"
	api.AddPod(p)
	_, err := target.Find(ctx(t), clientset(t, api), target.Selector{Namespace: ns})
	if !errors.Is(err, target.ErrNoInstance) {
		t.Fatalf("got %v, want ErrNoInstance", err)
	}
	want := "no pod labelled kratos-injector.io/instance in namespace shop: label a workload with kratos-injector.io/inject=true"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestFindSeveralInstances(t *testing.T) {
	api := apitest.New(t)
	api.AddPod(pod("web-1", "web"))
	api.AddPod(pod("web-2", "web"))
	api.AddPod(pod("admin-1", "admin"))
	cs := clientset(t, api)

	_, err := target.Find(ctx(t), cs, target.Selector{Namespace: ns})
	if !errors.Is(err, target.ErrSeveralInstances) || !strings.Contains(err.Error(), "admin, web") || !strings.Contains(err.Error(), "--instance") {
		t.Fatalf("got %v, want ErrSeveralInstances naming admin, web and --instance", err)
	}
	t.Logf("%v", err)

	in, err := target.Find(ctx(t), cs, target.Selector{Namespace: ns, Instance: "web"})
	if err != nil || in.Name != "web" || len(in.Pods) != 2 {
		t.Fatalf("--instance web: %+v, %v", in, err)
	}
	in, err = target.Find(ctx(t), cs, target.Selector{Namespace: ns, LabelSelector: "app=admin"})
	if err != nil || in.Name != "admin" || len(in.Pods) != 1 {
		t.Fatalf("-l app=admin: %+v, %v", in, err)
	}

	_, err = target.Find(ctx(t), cs, target.Selector{Namespace: ns, Instance: "shop"})
	if !errors.Is(err, target.ErrNoInstance) || !strings.Contains(err.Error(), "instances there: admin, web") {
		t.Fatalf("--instance shop: got %v, want ErrNoInstance listing admin, web", err)
	}
}

func TestFindForbidden(t *testing.T) {
	api := apitest.New(t)
	api.Deny("pods")
	_, err := target.Find(ctx(t), clientset(t, api), target.Selector{Namespace: ns})
	if !errors.Is(err, target.ErrForbidden) || !strings.Contains(err.Error(), `you need "list" on "pods" in namespace shop`) {
		t.Fatalf("got %v, want the missing permission", err)
	}
}

func TestReadyPod(t *testing.T) {
	newer := func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(p.CreationTimestamp.Add(time.Hour)) }
	terminating := func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }
	in := &target.Instance{Name: "web", Namespace: ns, Pods: []corev1.Pod{
		pod("web-old", "web"), pod("web-unready", "web", notReady, newer), pod("web-going", "web", terminating, newer),
	}}
	got, err := in.ReadyPod()
	if err != nil || got.Name != "web-old" {
		t.Fatalf("ReadyPod() = %v, %v; want web-old", got, err)
	}

	// A broken app container does not lock the operator out: Kratos's own readiness counts.
	appDown := func(p *corev1.Pod) {
		notReady(p)
		p.Status.ContainerStatuses[0].Ready = false
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}
	in.Pods = []corev1.Pod{pod("web-app-down", "web", appDown)}
	if got, err := in.ReadyPod(); err != nil || got.Name != "web-app-down" {
		t.Fatalf("app down, Kratos ready: ReadyPod() = %v, %v", got, err)
	}
}

func TestNotReadyReasons(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"render failed", func(p *corev1.Pod) {
			notReady(p)
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}}
			p.Status.InitContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", Message: "Secret db has no key dsn, uri or host"}}
			p.Status.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
		}, []string{"init container kratos-config waiting: CrashLoopBackOff", "last run exited 1: Error: Secret db has no key dsn, uri or host"}},
		{"not migrated", func(p *corev1.Pod) {
			notReady(p)
			p.Status.InitContainerStatuses[1].Ready = false
		}, []string{"sidecar container kratos is running but not ready", "kubectl kratos migrate"}},
		{"unschedulable", func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: "Unschedulable", Message: "0/1 nodes are available: 1 Insufficient memory."}}}
		}, []string{"not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient memory."}},
		{"image pull", func(p *corev1.Pod) {
			notReady(p)
			p.Status.InitContainerStatuses[1].Ready = false
			p.Status.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "oryd/kratos:v9"`}}
		}, []string{`sidecar container kratos waiting: ImagePullBackOff: Back-off pulling image "oryd/kratos:v9"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &target.Instance{Name: "web", Namespace: ns, Pods: []corev1.Pod{pod("web-1", "web", tc.mutate)}}
			_, err := in.ReadyPod()
			if !errors.Is(err, target.ErrNotReady) {
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
	unmigrated := func(p *corev1.Pod) { notReady(p); p.Status.InitContainerStatuses[1].Ready = false }
	in := &target.Instance{Name: "web", Namespace: ns, Pods: []corev1.Pod{pod("web-1", "web", unmigrated)}}
	if _, err := in.ReadyPod(); err == nil {
		t.Fatal("an unmigrated pod counted as Ready")
	}
	if p, err := in.KratosRunningPod(); err != nil || p.Name != "web-1" {
		t.Fatalf("KratosRunningPod() = %v, %v", p, err)
	}
	crashing := func(p *corev1.Pod) {
		notReady(p)
		p.Status.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}
	in.Pods = []corev1.Pod{pod("web-2", "web", crashing)}
	if _, err := in.KratosRunningPod(); !errors.Is(err, target.ErrNotReady) || !strings.Contains(err.Error(), "CrashLoopBackOff") {
		t.Fatalf("crashing Kratos: got %v", err)
	}
}

func TestPortForward(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	api := apitest.New(t)
	api.Forward(4434, strings.TrimPrefix(backend.URL, "http://"))
	p := pod("web-1", "web")

	start := time.Now()
	f, err := target.PortForward(ctx(t), api.RESTConfig(), clientset(t, api), &p, 4434)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("port-forward ready in %s (WebSocket refused, SPDY fallback)", time.Since(start))
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
	reqs := strings.Join(api.Requests(), "\n")
	if !strings.Contains(reqs, "POST /api/v1/namespaces/shop/pods/web-1/portforward") {
		t.Fatalf("no SPDY port-forward request:\n%s", reqs)
	}
	f.Close()
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(f.URL, "http://"), time.Second); err == nil {
		t.Fatal("local port still listens after Close")
	}
}

func TestPortForwardExplainsUnreachablePort(t *testing.T) {
	api := apitest.New(t) // nothing listens behind port 4434
	p := pod("web-1", "web")
	f, err := target.PortForward(ctx(t), api.RESTConfig(), clientset(t, api), &p, 4434)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = (&http.Client{Timeout: 5 * time.Second}).Get(f.URL + "/")
	if err == nil {
		t.Fatal("a request through a forward to nothing succeeded")
	}
	err = f.Explain(err)
	if !strings.Contains(err.Error(), "failed to connect to localhost:4434") || !strings.Contains(err.Error(), "pod web-1") {
		t.Fatalf("explained error %q does not say the pod's port refused", err)
	}
}

func TestStreamsForbidden(t *testing.T) {
	api := apitest.New(t)
	api.Deny("pods/portforward")
	api.Deny("pods/exec")
	p := pod("web-1", "web")
	_, err := target.PortForward(ctx(t), api.RESTConfig(), clientset(t, api), &p, 4434)
	if !errors.Is(err, target.ErrForbidden) || !strings.Contains(err.Error(), `you need "create" on "pods/portforward" in namespace shop`) {
		t.Fatalf("port-forward: got %v", err)
	}
	t.Logf("%v", err)
	err = target.Exec(ctx(t), api.RESTConfig(), clientset(t, api), &p, target.KratosContainer, []string{"true"}, io.Discard, io.Discard)
	if !errors.Is(err, target.ErrForbidden) || !strings.Contains(err.Error(), `you need "create" on "pods/exec" in namespace shop`) {
		t.Fatalf("exec: got %v", err)
	}
}

func TestExec(t *testing.T) {
	api := apitest.New(t)
	var gotPod, gotContainer string
	var gotCmd []string
	api.OnExec(func(pod, container string, cmd []string, stdout, stderr io.Writer) int {
		gotPod, gotContainer, gotCmd = pod, container, cmd
		fmt.Fprintln(stdout, "applied 3 migrations")
		fmt.Fprintln(stderr, "a warning")
		if cmd[0] == "false" {
			return 3
		}
		return 0
	})
	p := pod("web-1", "web")
	var out, errOut bytes.Buffer
	cmd := []string{"kratos", "migrate", "sql", "-e", "--yes", "-c", "/etc/kratos/kratos.yaml"}
	if err := target.Exec(ctx(t), api.RESTConfig(), clientset(t, api), &p, target.KratosContainer, cmd, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if gotPod != "web-1" || gotContainer != "kratos" || !reflect.DeepEqual(gotCmd, cmd) {
		t.Fatalf("exec'd %s/%s %q", gotPod, gotContainer, gotCmd)
	}
	if out.String() != "applied 3 migrations\n" || errOut.String() != "a warning\n" {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}

	err := target.Exec(ctx(t), api.RESTConfig(), clientset(t, api), &p, target.KratosContainer, []string{"false"}, io.Discard, io.Discard)
	var ee *target.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("exit 3: got %v", err)
	}
}
