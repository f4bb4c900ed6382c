package inject

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// checkRenderable fails when rendering refuses a spec the parser accepted: with no inputs
// mounted (inputDir empty) the only acceptable failure is a missing Secret or ConfigMap.
func checkRenderable(t testing.TB, s *config.Spec, inputDir string) {
	t.Helper()
	_, err := config.Render(s, config.RenderOptions{InputDir: inputDir})
	var in *config.InputError
	if err != nil && (!errors.As(err, &in) || strings.HasPrefix(err.Error(), "spec:")) {
		t.Errorf("rendering refuses an accepted spec: %v\nspec: %+v", err, s)
	}
}

type metav1OwnerRef struct{ kind, name string }

func podWith(name, generateName string, labels map[string]string, owners []metav1OwnerRef) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, GenerateName: generateName, Labels: labels}}
	for _, o := range owners {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: o.kind, Name: o.name, Controller: ptr.To(true)})
	}
	return p
}

// labelledPod is a minimal pod that opted in, with the given annotations.
func labelledPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "app-6c9f8d7b5-",
			Labels:       map[string]string{LabelInject: "true", "app": "app", "pod-template-hash": "6c9f8d7b5"},
			Annotations:  annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-6c9f8d7b5",
				UID: "5b0c4a7e-0000-4000-8000-000000000009", Controller: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}
}
