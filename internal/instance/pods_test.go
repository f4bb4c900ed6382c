package instance

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

func TestConfigPath(t *testing.T) {
	pod := func(c corev1.Container) *corev1.Pod {
		c.Name = inject.ContainerKratos
		return &corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{c}}}
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"no Kratos container: the rendered config's default path", &corev1.Pod{}, "/etc/kratos/kratos.yaml"},
		{"-c in args", pod(corev1.Container{Command: []string{"kratos"}, Args: []string{"serve", "-c", "/x/k.yaml"}}), "/x/k.yaml"},
		{"--config= in command", pod(corev1.Container{Command: []string{"kratos", "serve", "--config=/y.yaml"}}), "/y.yaml"},
		{"-c= form", pod(corev1.Container{Args: []string{"serve", "-c=/z.yaml"}}), "/z.yaml"},
		{"dangling -c", pod(corev1.Container{Args: []string{"serve", "-c"}}), "/etc/kratos/kratos.yaml"},
	} {
		if got := ConfigPath(tc.pod); got != tc.want {
			t.Errorf("%s: ConfigPath = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The plugin's pod choice and status both read container statuses from the init containers
// (native sidecar) and the regular ones; a Kratos in either place is found.
func TestContainerStatusLooksInBothLists(t *testing.T) {
	sidecar := &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: inject.ContainerKratos, RestartCount: 2}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", RestartCount: 1}}}}
	plain := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app"}, {Name: inject.ContainerKratos, RestartCount: 5}}}}
	if s := ContainerStatus(sidecar, inject.ContainerKratos); s == nil || s.RestartCount != 2 {
		t.Errorf("native sidecar: %v", s)
	}
	if s := ContainerStatus(plain, inject.ContainerKratos); s == nil || s.RestartCount != 5 {
		t.Errorf("regular container: %v", s)
	}
	if s := ContainerStatus(plain, "nope"); s != nil {
		t.Errorf("missing container: %v", s)
	}
	if n := Restarts(sidecar); n != 3 {
		t.Errorf("Restarts = %d, want 3", n)
	}
}

func TestNotReadyReasonNamesTheInjectorsFailures(t *testing.T) {
	manual := map[string]string{inject.AnnotationDatabaseSecret: "pg", inject.AnnotationMigrate: "manual"}
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"render failed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{{
			Name: inject.ContainerConfig, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "\nSecret db has no key dsn\nmore"}}}}}},
			"render failed: Secret db has no key dsn"},
		{"not migrated, manual", corev1.Pod{ObjectMeta: metaWith(manual), Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{{
			Name: inject.ContainerKratos, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}},
			ReasonNotMigrated},
		{"crashing app", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}}},
			"container app crashing (CrashLoopBackOff, 4 restarts): last exit 2 (Error)"},
	} {
		if got := NotReadyReason(&tc.pod); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func metaWith(annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Annotations: annotations}
}

// TestInjected: what the injector makes passes, in both sidecar modes; a pod missing any of
// the opt-in label, the status annotation or the Kratos container running `kratos serve` does
// not, and the reason says which.
func TestInjected(t *testing.T) {
	injected := func(annotations map[string]string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-1", Annotations: annotations,
				Labels: map[string]string{inject.LabelInject: "true", inject.LabelInstance: "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		}
		res, err := inject.Inject(p, inject.Options{InjectorImage: "injector:test"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Pod
	}
	native, container := injected(nil), injected(map[string]string{inject.AnnotationSidecar: "container"})
	for name, p := range map[string]*corev1.Pod{"native sidecar": native, "sidecar: container": container} {
		if ok, why := Injected(p); !ok {
			t.Errorf("%s: the injector's own pod is refused: %s", name, why)
		}
	}

	for _, tc := range []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   string
	}{
		{"instance label only", func(p *corev1.Pod) { delete(p.Labels, inject.LabelInject) }, "not labelled kratos-injector.io/inject=true"},
		{"opt-in label not true", func(p *corev1.Pod) { p.Labels[inject.LabelInject] = "yes" }, `label kratos-injector.io/inject is "yes", not "true"`},
		{"no status", func(p *corev1.Pod) { delete(p.Annotations, inject.AnnotationStatus) }, "no kratos-injector.io/status annotation"},
		{"bad status", func(p *corev1.Pod) { p.Annotations[inject.AnnotationStatus] = "ok" }, "annotation kratos-injector.io/status: status \"ok\": does not start with injected"},
		{"no Kratos container", func(p *corev1.Pod) { p.Spec.InitContainers = p.Spec.InitContainers[:1] }, "no kratos container"},
		{"Kratos init container that ends", func(p *corev1.Pod) { kratosOf(p).RestartPolicy = nil }, "init container kratos is not a sidecar (restartPolicy Always)"},
		{"Kratos container that does not serve", func(p *corev1.Pod) {
			c := kratosOf(p)
			c.Command, c.Args = []string{"sh", "-c"}, []string{"exec nc -l 4434"}
		}, "container kratos does not run `kratos serve`"},
	} {
		p := native.DeepCopy()
		tc.mutate(p)
		ok, why := Injected(p)
		if ok || why != tc.want {
			t.Errorf("%s: Injected = %v, %q; want false, %q", tc.name, ok, why, tc.want)
		}
	}
	if got := NotInjectedReason("no kratos container"); got != "not injected by kratos-injector: ignored (no kratos container)" {
		t.Errorf("NotInjectedReason = %q", got)
	}
}

func kratosOf(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == inject.ContainerKratos {
			return &p.Spec.InitContainers[i]
		}
	}
	panic("no kratos init container")
}
