package selfimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/charts"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// TestOwnImageAfterOverride: however a user changes the image, the webhook's pod says it, and
// OwnImage (what `webhook serve` runs at start without --injector-image) reads it with the RBAC
// the manifests grant. Both install paths: a kustomize overlay with `images:` alone (what
// `kustomize edit set image` writes) over manifests/self-signed, and the Helm chart with
// image.repository/tag values. No controllers run here, so the test creates the pod the
// Deployment would (its template, as is); the API server's admission (Pod Security restricted)
// still applies.
func TestOwnImageAfterOverride(t *testing.T) {
	bed, err := testbed.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer bed.Close()
	cp, err := bed.StartControlPlane(testbed.ControlPlaneOptions{})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// kustomize: an overlay of the released manifests.
	dir := t.TempDir()
	abs, err := filepath.Abs("../../manifests/self-signed")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("resources:\n- %s\nimages:\n- name: ghcr.io/kratos-injector/kratos-injector\n  newName: registry.example/mirror/kratos-injector\n  newTag: v9.9.9\n", rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	y, err := testbed.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Apply(ctx, "", y); err != nil {
		t.Fatal(err)
	}
	checkOwnImage(ctx, t, cp, "kratos-injector", "registry.example/mirror/kratos-injector:v9.9.9")

	// Helm values.
	c, err := charts.Load()
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := charts.Render(c, "ki", "identity-helm", map[string]any{
		"createNamespace": true,
		"image":           map[string]any{"repository": "registry.example/helm/kratos-injector", "tag": "v8.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Apply(ctx, "identity-helm", []byte(m)); err != nil {
		t.Fatal(err)
	}
	checkOwnImage(ctx, t, cp, "identity-helm", "registry.example/helm/kratos-injector:v8.0.0")

	// Without RBAC (another ServiceAccount) the webhook fails to start, naming why, rather than
	// inject a wrong image.
	other := impersonate(cp, "identity-helm", "default")
	if _, err := OwnImage(ctx, other, "identity-helm", "kratos-injector-0", Container); !apierrors.IsForbidden(unwrapAPI(err)) {
		t.Errorf("OwnImage as a ServiceAccount without the Role: %v, want forbidden", err)
	}
}

// unwrapAPI returns the API status error err wraps (apierrors.Is* do not unwrap).
func unwrapAPI(err error) error {
	var status *apierrors.StatusError
	if errors.As(err, &status) {
		return status
	}
	return err
}

func impersonate(cp *testbed.ControlPlane, ns, sa string) kubernetes.Interface {
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func checkOwnImage(ctx context.Context, t *testing.T, cp *testbed.ControlPlane, ns, want string) {
	t.Helper()
	d, err := cp.Client.AppsV1().Deployments(ns).Get(ctx, "kratos-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := podFromTemplate(d, "kratos-injector-0")
	if _, err := cp.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the webhook's pod: %v", err)
	}
	got, err := OwnImage(ctx, impersonate(cp, ns, d.Spec.Template.Spec.ServiceAccountName), ns, pod.Name, Container)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s: own image %q, want %q", ns, got, want)
	}
}

func podFromTemplate(d *appsv1.Deployment, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
}
