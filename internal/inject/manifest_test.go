package inject

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/golden"
)

// injectManifests runs InjectManifests with testOptions on the named inputs.
func injectManifests(t *testing.T, manifests ...Manifest) (string, *ManifestReport, error) {
	t.Helper()
	var out bytes.Buffer
	report, err := InjectManifests(&out, testOptions, manifests...)
	if err != nil && out.Len() > 0 {
		t.Errorf("something was written although it failed:\n%s", out.String())
	}
	return out.String(), report, err
}

func readManifest(t *testing.T, file string) Manifest {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return Manifest{Name: file, Data: b}
}

// TestInjectManifestsGolden injects the multi-document files of testdata/manifests and compares
// with their .golden.yaml (refresh: go test ./internal/inject/ -run TestInjectManifestsGolden
// -update). Documents without anything to inject are written back byte for byte, in order; the
// output injected again is the output, without a warning.
func TestInjectManifestsGolden(t *testing.T) {
	for _, in := range golden.Paths(t, "testdata/manifests/*.in.yaml") {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			input := readManifest(t, in)
			got, _, err := injectManifests(t, input)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, strings.TrimSuffix(in, ".in.yaml")+".golden.yaml", "output", []byte(got))

			// Every input document without a labelled pod (template) is in the output as is.
			for _, doc := range strings.Split(string(input.Data), "\n---\n") {
				if !strings.Contains(doc, LabelInject+`: "true"`) && !strings.Contains(got, strings.TrimSpace(doc)) {
					t.Errorf("document not written back unchanged:\n%s", doc)
				}
			}
			if n, m := strings.Count(string(input.Data), "\n---\n"), strings.Count(got, "\n---\n"); n != m {
				t.Errorf("%d document separators in, %d out", n, m)
			}

			again, report, err := injectManifests(t, Manifest{Name: "output", Data: []byte(got)})
			if err != nil {
				t.Fatalf("second injection: %v", err)
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Errorf("injecting the output again changed it (-once +twice):\n%s", d)
			}
			if len(report.Warnings) > 0 {
				t.Errorf("second injection warned: %q", report.Warnings)
			}
		})
	}
}

// wrappers put a pod's metadata and spec into each kind InjectManifests handles, named name,
// and return where the pod template ends up in the output.
var wrappers = []struct {
	kind string
	wrap func(name string, pod *corev1.Pod) runtime.Object
	// template extracts the injected template from the decoded output document.
	template func(t *testing.T, doc []byte) corev1.PodTemplateSpec
}{
	{"Pod", func(_ string, pod *corev1.Pod) runtime.Object { return pod },
		func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
			var p corev1.Pod
			mustUnmarshal(t, doc, &p)
			return corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
		}},
	{"Deployment", func(name string, pod *corev1.Pod) runtime.Object {
		return &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}, Template: template(pod)}}
	}, func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
		var d appsv1.Deployment
		mustUnmarshal(t, doc, &d)
		return d.Spec.Template
	}},
	{"StatefulSet", func(name string, pod *corev1.Pod) runtime.Object {
		return &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.StatefulSetSpec{ServiceName: name, Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}, Template: template(pod)}}
	}, func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
		var d appsv1.StatefulSet
		mustUnmarshal(t, doc, &d)
		return d.Spec.Template
	}},
	{"DaemonSet", func(name string, pod *corev1.Pod) runtime.Object {
		return &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}, Template: template(pod)}}
	}, func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
		var d appsv1.DaemonSet
		mustUnmarshal(t, doc, &d)
		return d.Spec.Template
	}},
	{"Job", func(name string, pod *corev1.Pod) runtime.Object {
		return &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: batchv1.JobSpec{Template: template(pod)}}
	}, func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
		var d batchv1.Job
		mustUnmarshal(t, doc, &d)
		return d.Spec.Template
	}},
	{"CronJob", func(name string, pod *corev1.Pod) runtime.Object {
		return &batchv1.CronJob{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: batchv1.CronJobSpec{Schedule: "@hourly", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: template(pod)}}}}
	}, func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
		var d batchv1.CronJob
		mustUnmarshal(t, doc, &d)
		return d.Spec.JobTemplate.Spec.Template
	}},
	{"List", func(name string, pod *corev1.Pod) runtime.Object {
		d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}, Template: template(pod)}}
		cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: "other"}}
		return &corev1.List{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"},
			Items: []runtime.RawExtension{{Object: cm}, {Object: d}}}
	}, func(t *testing.T, doc []byte) corev1.PodTemplateSpec {
		var l struct {
			Items []appsv1.Deployment `json:"items"`
		}
		if err := yaml.Unmarshal(doc, &l); err != nil {
			t.Fatalf("output does not decode: %v\n%s", err, doc)
		}
		if len(l.Items) != 2 {
			t.Fatalf("List has %d items, want 2", len(l.Items))
		}
		return l.Items[1].Spec.Template
	}},
}

// template is the pod as a workload's template: no name, no owner.
func template(pod *corev1.Pod) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels, Annotations: pod.Annotations},
		Spec:       pod.Spec,
	}
}

func mustUnmarshal(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("output does not decode: %v\n%s", err, doc)
	}
}

func marshalManifest(t *testing.T, obj runtime.Object) Manifest {
	t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return Manifest{Name: "stdin", Data: b}
}

// TestInjectManifestsSharesWebhookGoldens: every case of the webhook's golden files, as a Pod
// and as the template of each workload kind (named as the webhook names the instance), injected
// as a manifest, gives the webhook's golden pod: the same core makes the same decisions.
func TestInjectManifestsSharesWebhookGoldens(t *testing.T) {
	for _, in := range golden.Paths(t, "testdata/*.in.yaml") {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		pod := readPod(t, in)
		want := readPod(t, strings.TrimSuffix(in, ".in.yaml")+".golden.yaml")
		instance := want.Labels[LabelInstance]
		if instance == "" {
			t.Fatalf("%s: golden pod has no instance label", name)
		}
		for _, w := range wrappers {
			t.Run(name+"/"+w.kind, func(t *testing.T) {
				out, _, err := injectManifests(t, marshalManifest(t, w.wrap(instance, pod.DeepCopy())))
				if err != nil {
					t.Fatal(err)
				}
				got := w.template(t, []byte(out))
				if d := cmp.Diff(want.Spec, got.Spec); d != "" {
					t.Errorf("injected pod spec differs from the webhook's golden (-webhook +manifest):\n%s", d)
				}
				if d := cmp.Diff(want.Labels, got.Labels); d != "" {
					t.Errorf("labels differ from the webhook's golden (-webhook +manifest):\n%s", d)
				}
				if d := cmp.Diff(want.Annotations, got.Annotations); d != "" {
					t.Errorf("annotations differ from the webhook's golden (-webhook +manifest):\n%s", d)
				}

				// Injecting the output again changes nothing, byte for byte, and says nothing.
				again, report, err := injectManifests(t, Manifest{Name: "output", Data: []byte(out)})
				if err != nil || again != out || len(report.Warnings) > 0 {
					t.Errorf("second injection: err %v, output changed: %v, warnings %q", err, again != out, report.Warnings)
				}
			})
		}
	}
}

// TestInjectManifestsInstanceNames: the instance label is the workload's name, as the webhook
// derives it from the pods' controller; a pinned label wins; a Job with generateName gives its
// prefix. The webhook's warnings come once per object, naming it and where it is.
func TestInjectManifestsInstanceNames(t *testing.T) {
	const file = "testdata/manifests/workloads.in.yaml"
	out, report, err := injectManifests(t, readManifest(t, file))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Deployment/storefront": "storefront", "StatefulSet/accounts": "shop-accounts",
		"DaemonSet/edge-auth": "edge-auth", "CronJob/nightly-report": "nightly-report", "Job/": "import-users"}
	got := map[string]string{}
	for _, doc := range strings.Split(out, "\n---\n") {
		var obj struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		var tmpl *corev1.PodTemplateSpec
		switch obj.Kind {
		case "Deployment", "StatefulSet", "DaemonSet", "Job":
			var w struct {
				Spec struct {
					Template corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			_ = yaml.Unmarshal([]byte(doc), &w)
			tmpl = &w.Spec.Template
		case "CronJob":
			var c batchv1.CronJob
			_ = yaml.Unmarshal([]byte(doc), &c)
			tmpl = &c.Spec.JobTemplate.Spec.Template
		default:
			continue
		}
		if v, ok := tmpl.Labels[LabelInstance]; ok {
			got[obj.Kind+"/"+obj.Metadata.Name] = v
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("instance labels (-want +got):\n%s", d)
	}
	w := "DaemonSet edge-auth (" + file + ", document 7): " + AnnotationSecretsSecret + " is not set"
	n := 0
	for _, got := range report.Warnings {
		if strings.HasPrefix(got, w) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings %q..., want 1; warnings:\n%s", n, w, strings.Join(report.Warnings, "\n"))
	}
}

// TestInjectManifestsDenials: invalid annotations or a clash fail with the webhook's own denial
// message, naming each object and where it is; nothing is written.
func TestInjectManifestsDenials(t *testing.T) {
	bad := map[string]string{
		AnnotationFeatures:  "local-idp,teleport",
		AnnotationPublicURL: "not a url",
		Prefix + "colour":   "blue",
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelInject: "true"}, Annotations: bad},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	_, webhookErr := Inject(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: pod.Labels, Annotations: bad}, Spec: pod.Spec}, testOptions)
	if webhookErr == nil {
		t.Fatal("the core accepts the bad annotations")
	}
	dep := marshalManifest(t, wrappers[1].wrap("shop", pod))
	clash := pod.DeepCopy()
	clash.Annotations = nil
	clash.Spec.Containers[0].Name = "kratos"
	job := marshalManifest(t, wrappers[4].wrap("report", clash))
	input := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\n" + string(dep.Data) + "---\n" + string(job.Data)

	_, _, err := injectManifests(t, Manifest{Name: "stdin", Data: []byte(input)})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"2 objects cannot be injected (nothing was written)",
		"Deployment shop (stdin, document 2): " + webhookErr.Error(),
		"Job report (stdin, document 3): cannot inject Kratos: spec.containers[kratos]: container name is reserved",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Errorf("the webhook's *InvalidError is not in the error chain: %#v", err)
	}

	// One failing object: its message alone.
	_, _, err = injectManifests(t, dep)
	if want := "Deployment shop (stdin, document 1): " + webhookErr.Error(); err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}

	// Not YAML: named by its place.
	_, _, err = injectManifests(t, Manifest{Name: "stdin", Data: []byte("kind: Pod\n---\n: : :\n  - [\n")})
	if err == nil || !strings.HasPrefix(err.Error(), "stdin, document 2: not YAML") {
		t.Errorf("bad YAML: %v", err)
	}
}

// TestInjectManifestsStaleStatus: a manifest injected already whose annotations were changed
// since is written back unchanged (as the webhook leaves a pod with a status alone), but with a
// warning naming it: silently keeping the old injection would hide the new settings.
func TestInjectManifestsStaleStatus(t *testing.T) {
	pod := labelledPod(map[string]string{AnnotationSecretsSecret: "shop-kratos", AnnotationSMTPSecret: "shop-smtp"})
	injected, _, err := injectManifests(t, marshalManifest(t, wrappers[1].wrap("shop", pod)))
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	mustUnmarshal(t, []byte(injected), &dep)
	st, err := ParseStatus(dep.Spec.Template.Annotations[AnnotationStatus])
	if err != nil {
		t.Fatal(err)
	}

	edit := func(k, v string) Manifest {
		d := dep.DeepCopy()
		d.Spec.Template.Annotations[k] = v
		m := marshalManifest(t, d)
		m.Name = "app.yaml"
		return m
	}
	for _, tc := range []struct {
		name string
		in   Manifest
		opts Options
		warn string // its start; "" for no warning
	}{
		{"unchanged", Manifest{Name: "app.yaml", Data: []byte(injected)}, testOptions, ""},
		{"another version, same spec", edit(AnnotationStatus, Status{Version: "v0.0.1", SpecHash: st.SpecHash}.String()), testOptions, ""},
		{"no spec hash recorded", edit(AnnotationStatus, "injected"), testOptions, ""},
		{"annotation changed", edit(AnnotationLogLevel, "debug"), testOptions,
			"Deployment shop (app.yaml, document 1): injected already with spec " + st.SpecHash + ", but its annotations now give spec "},
		{"Kratos image changed", Manifest{Name: "app.yaml", Data: []byte(injected)}, Options{InjectorImage: testOptions.InjectorImage, KratosImage: "oryd/kratos:v9.9.9", Version: "test"},
			"Deployment shop (app.yaml, document 1): injected already with spec " + st.SpecHash + ", but its annotations now give spec "},
		{"annotations invalid", edit(AnnotationLogLevel, "loud"), testOptions,
			"Deployment shop (app.yaml, document 1): injected already with spec " + st.SpecHash + ", but its annotations are no longer valid (cannot inject Kratos: " + AnnotationLogLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			report, err := InjectManifests(&out, tc.opts, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(tc.in.Data) {
				t.Errorf("an injected manifest was changed:\n%s", out.String())
			}
			if tc.warn == "" {
				if len(report.Warnings) > 0 {
					t.Errorf("unexpected warnings %q", report.Warnings)
				}
				return
			}
			if len(report.Warnings) != 1 {
				t.Fatalf("warnings %q, want one", report.Warnings)
			}
			w := report.Warnings[0]
			if !strings.HasPrefix(w, tc.warn) {
				t.Errorf("warning %q\ndoes not start with %q", w, tc.warn)
			}
			for _, want := range []string{"inject the un-injected source again", "remove the " + AnnotationStatus + " annotation"} {
				if !strings.Contains(w, want) {
					t.Errorf("warning %q does not say %q", w, want)
				}
			}
		})
	}
}

// TestInjectResult: Inject hands its callers the spec it parsed and the warnings it deserves, so
// none of them parses the annotations again; a pod injected already is not read.
func TestInjectResult(t *testing.T) {
	pod := labelledPod(map[string]string{AnnotationLogLevel: "debug"})
	res, err := Inject(pod, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ParseAnnotations(pod.Annotations, testOptions.KratosImage)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(spec, res.Spec); d != "" {
		t.Errorf("Result.Spec (-parsed +result):\n%s", d)
	}
	if d := cmp.Diff(Warnings(pod, spec), res.Warnings); d != "" || len(res.Warnings) == 0 {
		t.Errorf("Result.Warnings (-want +got):\n%s", d)
	}
	again, err := Inject(res.Pod, testOptions)
	if err != nil || again.Spec != nil || again.Warnings != nil || again.Pod == res.Pod {
		t.Errorf("injected pod: %+v %v; want a copy, no spec, no warnings", again, err)
	}
}
