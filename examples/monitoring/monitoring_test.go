package monitoring_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The examples are checked against the CRDs' schemas on the API server rather than decoded into
// the operator's Go types: its API module (v0.95.2) would upgrade k8s.io/utils,
// k8s.io/kube-openapi and k8s.io/apiextensions-apiserver in this module's graph. Server-side
// apply with fieldValidation=Strict is as strict and checks more: unknown and duplicate fields
// are errors, and values must pass the schema (types, enums, patterns, CEL rules) as they would
// in a cluster.

const (
	ns           = "kratos-injector"
	fieldManager = "kratos-injector-examples"
)

var (
	podMonitors     = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "podmonitors"}
	serviceMonitors = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}
	crds            = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// examples are the files and what each must be.
var examples = []struct {
	file string
	gvr  schema.GroupVersionResource
	kind string
}{
	{"podmonitor.yaml", podMonitors, "PodMonitor"},
	{"servicemonitor.yaml", serviceMonitors, "ServiceMonitor"},
}

var (
	bedOnce sync.Once
	bed     *testbed.Bed
	dyn     dynamic.Interface
	bedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bed != nil {
		bed.Close()
	}
	os.Exit(code)
}

// cluster starts etcd + kube-apiserver once, installs the PodMonitor and ServiceMonitor CRDs and
// the kratos-injector namespace, and returns a client once the CRDs are Established.
func cluster(t *testing.T) dynamic.Interface {
	t.Helper()
	bedOnce.Do(func() { dyn, bedErr = start() })
	if bedErr != nil {
		t.Fatalf("test bed: %v", bedErr)
	}
	return dyn
}

func start() (dynamic.Interface, error) {
	var err error
	if bed, err = testbed.New(""); err != nil {
		return nil, err
	}
	cp, err := bed.StartControlPlane(testbed.ControlPlaneOptions{})
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	d, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, plural := range []string{"podmonitors", "servicemonitors"} {
		y, err := testbed.PrometheusOperatorCRD(plural)
		if err != nil {
			return nil, err
		}
		crd, err := testbed.SingleObject(y)
		if err != nil {
			return nil, fmt.Errorf("CRD %s: %w", plural, err)
		}
		if err := apply(ctx, d, crds, crd); err != nil {
			return nil, fmt.Errorf("install CRD %s: %w", plural, err)
		}
		if err := testbed.WaitCRDEstablished(ctx, d, crd.GetName()); err != nil {
			return nil, err
		}
	}
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if err := apply(ctx, d, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, nsObj); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return d, nil
}

// apply is `kubectl apply --server-side --force-conflicts --validate=strict`. Server-side apply
// itself rejects a field the schema lacks (it builds a typed patch from the object); Strict also
// makes a duplicate field an error instead of a warning.
func apply(ctx context.Context, d dynamic.Interface, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	return testbed.ApplyStrict(ctx, d, gvr, u, fieldManager)
}

func load(t *testing.T, file string) *unstructured.Unstructured {
	t.Helper()
	y, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Strict YAML first: a key given twice is an error here, silently the last one elsewhere.
	if _, err := yaml.YAMLToJSONStrict(y); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	u, err := testbed.SingleObject(y)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return u
}

// TestApply applies each example server-side with strict validation, reads it back and checks
// that the API server kept every field of the file (none pruned as unknown).
func TestApply(t *testing.T) {
	d := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			u := load(t, ex.file)
			if u.GetKind() != ex.kind || u.GroupVersionKind().GroupVersion() != ex.gvr.GroupVersion() {
				t.Fatalf("%s is a %s, want %s %s", ex.file, u.GroupVersionKind(), ex.gvr.GroupVersion(), ex.kind)
			}
			if u.GetNamespace() != ns {
				t.Errorf("namespace %q, want %q", u.GetNamespace(), ns)
			}
			if err := apply(ctx, d, ex.gvr, u); err != nil {
				t.Fatal(err)
			}
			got, err := d.Resource(ex.gvr).Namespace(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if err := testbed.Subset(u.Object, got.Object); err != nil {
				t.Errorf("stored object differs from %s: %v", ex.file, err)
			}
		})
	}
}

// TestRejectsWrongField proves the check has teeth: a misspelt field, a misplaced one and a value
// outside the schema are each rejected by the API server, not pruned or defaulted.
func TestRejectsWrongField(t *testing.T) {
	d := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		name   string
		file   string
		gvr    schema.GroupVersionResource
		reason string // what the error must name
		breaks func(u *unstructured.Unstructured)
	}{
		{"misspelt endpoint field", "podmonitor.yaml", podMonitors, ".spec.podMetricsEndpoints[0].paht: field not declared in schema", func(u *unstructured.Unstructured) {
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "podMetricsEndpoints")
			ep := eps[0].(map[string]any)
			ep["paht"] = ep["path"]
			delete(ep, "path")
			_ = unstructured.SetNestedSlice(u.Object, eps, "spec", "podMetricsEndpoints")
		}},
		{"ServiceMonitor's endpoints in a PodMonitor", "podmonitor.yaml", podMonitors, ".spec.endpoints: field not declared in schema", func(u *unstructured.Unstructured) {
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "podMetricsEndpoints")
			unstructured.RemoveNestedField(u.Object, "spec", "podMetricsEndpoints")
			_ = unstructured.SetNestedSlice(u.Object, eps, "spec", "endpoints")
		}},
		{"relabel action outside the enum", "podmonitor.yaml", podMonitors, `spec.podMetricsEndpoints[0].relabelings[0].action: Unsupported value: "rename"`, func(u *unstructured.Unstructured) {
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "podMetricsEndpoints")
			rl := eps[0].(map[string]any)["relabelings"].([]any)
			rl[0].(map[string]any)["action"] = "rename"
			_ = unstructured.SetNestedSlice(u.Object, eps, "spec", "podMetricsEndpoints")
		}},
		{"namespaceSelector.any as a string", "servicemonitor.yaml", serviceMonitors, ".spec.namespaceSelector.any: expected boolean", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "yes", "spec", "namespaceSelector", "any")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := load(t, c.file)
			u.SetName(u.GetName() + "-broken")
			c.breaks(u)
			err := apply(ctx, d, c.gvr, u)
			if err == nil {
				t.Fatalf("the API server accepted the broken %s", c.file)
			}
			// Values the schema refuses are 422 Invalid; fields it lacks, or of the wrong type, fail
			// earlier, when server-side apply builds its typed patch. Either way the message must
			// name the broken field.
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("want an error naming %q, got %v", c.reason, err)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

// TestSelectors checks what the selectors select, with the API types' own label matching: the
// PodMonitor picks any pod with an instance label (whatever its value) and nothing else, and the
// metrics Service selects the webhook Deployment's pods.
func TestSelectors(t *testing.T) {
	pm := load(t, "podmonitor.yaml")
	sel := labelSelector(t, pm, "spec", "selector")
	for lbls, want := range map[string]bool{
		"kratos-injector.io/instance=shop":                                           true,
		"kratos-injector.io/instance=":                                               true,
		"app=shop,kratos-injector.io/inject=true":                                    false,
		"app.kubernetes.io/name=kratos-injector,app.kubernetes.io/component=webhook": false,
	} {
		set, err := labels.ConvertSelectorToLabelsMap(lbls)
		if err != nil {
			t.Fatal(err)
		}
		if got := sel.Matches(set); got != want {
			t.Errorf("PodMonitor selector %s on pod labels {%s}: got %v, want %v", sel, lbls, got, want)
		}
	}
	if anyNS, _, _ := unstructured.NestedBool(pm.Object, "spec", "namespaceSelector", "any"); !anyNS {
		t.Error("PodMonitor: want namespaceSelector.any: true")
	}
	eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if len(eps) != 1 {
		t.Fatalf("PodMonitor: want one endpoint, got %d", len(eps))
	}
	ep := eps[0].(map[string]any)
	if ep["port"] != "kratos-metrics" || ep["path"] != "/metrics" {
		t.Errorf("PodMonitor endpoint: port %v path %v, want kratos-metrics /metrics", ep["port"], ep["path"])
	}
	wantRelabel := map[string]any{
		"sourceLabels": []any{"__meta_kubernetes_pod_label_kratos_injector_io_instance"},
		"targetLabel":  "kratos_instance", "action": "replace",
	}
	if rl, _ := ep["relabelings"].([]any); len(rl) != 1 || !reflect.DeepEqual(rl[0], wantRelabel) {
		t.Errorf("PodMonitor relabelings: got %v, want [%v]", ep["relabelings"], wantRelabel)
	}

	// The install manifests' metrics Service (rendered from the chart) must select their
	// Deployment's pods; both decoded strictly into their API types.
	var deploy appsv1.Deployment
	var svc corev1.Service
	installed(t, "Deployment", "kratos-injector", &deploy)
	installed(t, "Service", "kratos-injector-metrics", &svc)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the webhook pods %v", svc.Spec.Selector, deploy.Spec.Template.Labels)
	}
	var metricsPort *corev1.ContainerPort
	for _, c := range deploy.Spec.Template.Spec.Containers {
		for i, p := range c.Ports {
			if p.Name == "metrics" {
				metricsPort = &c.Ports[i]
			}
		}
	}
	if metricsPort == nil {
		t.Fatal("the webhook Deployment has no port named metrics")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != metricsPort.ContainerPort || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("Service ports %+v: want one, metrics, %d -> the container port metrics", svc.Spec.Ports, metricsPort.ContainerPort)
	}

	// And the ServiceMonitor must select that Service, in its namespace, on that port.
	sm := load(t, "servicemonitor.yaml")
	if !labelSelector(t, sm, "spec", "selector").Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor does not select the Service's labels %v", svc.Labels)
	}
	if names, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames"); !reflect.DeepEqual(names, []string{svc.Namespace}) {
		t.Errorf("ServiceMonitor namespaces %v, want [%s]", names, svc.Namespace)
	}
	smEps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(smEps) != 1 || smEps[0].(map[string]any)["port"] != "metrics" || smEps[0].(map[string]any)["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %v: want one, port metrics, path /metrics", smEps)
	}
}

// labelSelector converts a selector field strictly into metav1.LabelSelector and then into a
// labels.Selector, as the operator does.
func labelSelector(t *testing.T, u *unstructured.Unstructured, fields ...string) labels.Selector {
	t.Helper()
	m, ok, err := unstructured.NestedMap(u.Object, fields...)
	if err != nil || !ok {
		t.Fatalf("%s %s: no %v (%v)", u.GetKind(), u.GetName(), fields, err)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(m, &ls, true); err != nil {
		t.Fatalf("%s %s selector: %v", u.GetKind(), u.GetName(), err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		t.Fatalf("%s %s selector: %v", u.GetKind(), u.GetName(), err)
	}
	return sel
}

// installed decodes strictly the object of that kind and name from the install manifests
// (manifests/self-signed/kratos-injector.yaml, rendered from the chart).
func installed(t *testing.T, kind, name string, into any) {
	t.Helper()
	const file = "../../manifests/self-signed/kratos-injector.yaml"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind != kind || meta.Metadata.Name != name {
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %s %s: %v", file, kind, name, err)
		}
		return
	}
	t.Fatalf("%s has no %s %s", file, kind, name)
}
