package charts

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
)

// TestManifestsUpToDate: manifests/ is exactly what the chart renders (one source of truth). On
// failure run `make manifests`.
func TestManifestsUpToDate(t *testing.T) {
	files, err := Manifests()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("..", "manifests", name))
		if err != nil {
			t.Errorf("manifests/%s: %v (run `make manifests`)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("manifests/%s differs from what charts/kratos-injector renders: run `make manifests`", name)
		}
	}
	// And nothing else there is a manifest of its own (no hand-maintained copy beside the chart).
	for _, mode := range TLSModes {
		entries, err := os.ReadDir(filepath.Join("..", "manifests", mode))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := files[mode+"/"+e.Name()]; !ok {
				t.Errorf("manifests/%s/%s is not generated from the chart", mode, e.Name())
			}
		}
	}
}

// TestLint is `helm lint --strict` with each TLS mode's values.
func TestLint(t *testing.T) {
	for _, mode := range TLSModes {
		for _, vals := range []map[string]any{
			{"tls": map[string]any{"mode": mode}},
			ManifestValues(mode),
		} {
			l := lint.AllWithKubeVersion(Name, vals, "kratos-injector", &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"})
			for _, m := range l.Messages {
				// --strict: warnings fail too; INFO (e.g. "icon is recommended") does not.
				if m.Severity > support.InfoSev {
					t.Errorf("%s: %v", mode, m)
				}
			}
		}
	}
}

func decode(t *testing.T, manifest string) []runtime.Object {
	t.Helper()
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	var out []runtime.Object
	for _, doc := range releaseutil.SplitManifests(manifest) {
		if strings.Contains(doc, "cert-manager.io/v1") && strings.Contains(doc, "kind: Certificate") || strings.Contains(doc, "kind: Issuer") {
			continue // cert-manager's types: checked in manifests/ (manifests_test.go)
		}
		obj, _, err := strict.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("strict decoding:\n%s\n: %v", doc, err)
		}
		out = append(out, obj)
	}
	return out
}

func render(t *testing.T, vals map[string]any) ([]runtime.Object, []runtime.Object) {
	t.Helper()
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	m, hooks, err := Render(c, "ki", "identity-system", vals)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, m), decode(t, strings.Join(hooks, "\n---\n"))
}

func deployment(t *testing.T, objs []runtime.Object) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			return d
		}
	}
	t.Fatal("no Deployment")
	return nil
}

func webhookConfig(t *testing.T, objs []runtime.Object) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	for _, o := range objs {
		if d, ok := o.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			return d
		}
	}
	t.Fatal("no MutatingWebhookConfiguration")
	return nil
}

// TestValues: the values reach the objects they promise to.
func TestValues(t *testing.T) {
	objs, hooks := render(t, map[string]any{
		"replicas":      3,
		"image":         map[string]any{"repository": "registry.example/ki", "tag": "v1.2.3", "digest": "sha256:" + strings.Repeat("ab", 32)},
		"injectorImage": map[string]any{"repository": "registry.example/render", "tag": "v9"},
		"kratosImage":   "oryd/kratos:v1.3.2",
		"logLevel":      "debug",
		"metrics":       map[string]any{"enabled": false},
		"webhook": map[string]any{"failurePolicy": "Ignore", "timeoutSeconds": 3,
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"identity": "on"}}},
		"podDisruptionBudget": map[string]any{"enabled": false},
		"affinity":            map[string]any{"nodeAffinity": map[string]any{}},
		"tls":                 map[string]any{"mode": "cert-manager"},
	})
	d := deployment(t, objs)
	c := d.Spec.Template.Spec.Containers[0]
	if *d.Spec.Replicas != 3 || c.Image != "registry.example/ki:v1.2.3@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("replicas %d image %s", *d.Spec.Replicas, c.Image)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--injector-image=registry.example/render:v9", "--kratos-image=oryd/kratos:v1.3.2", "--zap-log-level=debug", "--metrics-bind-address=0"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if strings.Contains(args, "--tls-mode") {
		t.Errorf("cert-manager mode sets --tls-mode: %s", args)
	}
	if d.Namespace != "identity-system" || d.Spec.Template.Spec.Affinity.PodAntiAffinity != nil {
		t.Errorf("namespace %s affinity %+v", d.Namespace, d.Spec.Template.Spec.Affinity)
	}
	w := webhookConfig(t, objs).Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.TimeoutSeconds != 3 || w.NamespaceSelector.MatchLabels["identity"] != "on" ||
		w.ClientConfig.Service.Namespace != "identity-system" {
		t.Errorf("webhook %+v", w)
	}
	if webhookConfig(t, objs).Annotations["cert-manager.io/inject-ca-from"] != "identity-system/kratos-injector-serving" {
		t.Errorf("annotations %v", webhookConfig(t, objs).Annotations)
	}
	var job *batchv1.Job
	for _, h := range hooks {
		if j, ok := h.(*batchv1.Job); ok {
			job = j
		}
	}
	if job == nil || job.Spec.Template.Spec.Containers[0].Image != c.Image ||
		strings.Join(job.Spec.Template.Spec.Containers[0].Args, " ") != "uninstall --webhook-config-name=kratos-injector" {
		t.Errorf("pre-delete hook Job %+v: want `uninstall` in the webhook's image", job)
	}

	// Defaults: the chart's appVersion as the tag, no --injector-image (the webhook reads its
	// own), the default namespace exclusion, self-signed.
	objs, _ = render(t, nil)
	d = deployment(t, objs)
	c = d.Spec.Template.Spec.Containers[0]
	ch, _ := Load()
	if c.Image != "ghcr.io/kratos-injector/kratos-injector:"+ch.Metadata.AppVersion || strings.Contains(strings.Join(c.Args, " "), "--injector-image") ||
		!strings.Contains(strings.Join(c.Args, " "), "--tls-mode=self-signed") {
		t.Errorf("default image %s args %v", c.Image, c.Args)
	}
	w = webhookConfig(t, objs).Webhooks[0]
	if e := w.NamespaceSelector.MatchExpressions; len(e) != 1 || strings.Join(e[0].Values, ",") != "kube-system,kube-public,identity-system" {
		t.Errorf("default namespaceSelector %+v", w.NamespaceSelector)
	}

	// A bad TLS mode fails the render, naming the value.
	c2, _ := Load()
	if _, _, err := Render(c2, "ki", "x", map[string]any{"tls": map[string]any{"mode": "none"}}); err == nil || !strings.Contains(err.Error(), `tls.mode "none"`) {
		t.Errorf("tls.mode none: %v", err)
	}
}
