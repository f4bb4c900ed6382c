package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Every injected container, in either sidecar mode and with every optional container, has
// the empty kratos-no-token read-only at the token's path and nothing else there; the app's
// containers keep what they had (here the API server's token volume).
func TestInjectedContainersHoldNoToken(t *testing.T) {
	for _, file := range []string{"testdata/service-account-token.in.yaml", "testdata/all-annotations.in.yaml", "testdata/sidecar-container.in.yaml", "testdata/postgres-smtp-idp.in.yaml"} {
		t.Run(file, func(t *testing.T) {
			pod := readPod(t, file)
			res, err := NewInjector(testOptions).Inject(pod)
			if err != nil {
				t.Fatal(err)
			}
			own := map[string]bool{}
			for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
				own[c.Name] = true
			}
			injected := 0
			for _, c := range append(append([]corev1.Container(nil), res.Pod.Spec.InitContainers...), res.Pod.Spec.Containers...) {
				var at []corev1.VolumeMount
				for _, m := range c.VolumeMounts {
					if m.MountPath == serviceAccountTokenPath {
						at = append(at, m)
					}
				}
				if own[c.Name] {
					for _, m := range at {
						if m.Name == VolumeNoToken {
							t.Errorf("the app's container %s got %s", c.Name, VolumeNoToken)
						}
					}
					continue
				}
				injected++
				if len(at) != 1 || at[0].Name != VolumeNoToken || !at[0].ReadOnly {
					t.Errorf("injected container %s has %v at the token's path, want %s read-only", c.Name, at, VolumeNoToken)
				}
			}
			if injected < 3 {
				t.Errorf("%d injected containers", injected)
			}
			n := 0
			for _, v := range res.Pod.Spec.Volumes {
				if v.Name == VolumeNoToken {
					n++
					if v.EmptyDir == nil {
						t.Errorf("%s is %+v, want an emptyDir", VolumeNoToken, v.VolumeSource)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d volumes %s, want 1", n, VolumeNoToken)
			}
		})
	}
}

// The name is ours: a pod with its own kratos-no-token volume is denied, naming it.
func TestNoTokenVolumeNameReserved(t *testing.T) {
	pod := labelledPod(nil)
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: VolumeNoToken})
	_, err := NewInjector(testOptions).Inject(pod)
	if err == nil || !strings.Contains(err.Error(), "spec.volumes["+VolumeNoToken+"]") {
		t.Fatalf("Inject: %v, want a denial naming spec.volumes[%s]", err, VolumeNoToken)
	}
}
