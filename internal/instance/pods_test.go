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
