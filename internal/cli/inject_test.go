package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/golden"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/version"
)

// The images of the webhook's golden files (internal/inject's testOptions).
const goldenInjectorImage = "ghcr.io/kratos-injector/kratos-injector:test"

var goldenImages = []string{"--injector-image", goldenInjectorImage, "--kratos-image", inject.DefaultKratosImage}

// injectCLI runs `kubectl kratos inject args...` in-process with stdin; no cluster is involved.
func injectCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return pluginMain(t, stdin, append([]string{"inject"}, args...)...)
}

// pluginMain runs `kubectl kratos args...` in-process with stdin.
func pluginMain(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = cli.Main(ctx, args, streams)
	return code, out.String(), errOut.String()
}

// normalizeVersion makes the status annotation carry the goldens' injector version: the CLI
// records its build's.
func normalizeVersion(s string) string {
	return strings.ReplaceAll(s, "version="+version.Version+";", "version=test;")
}

func readYAML(t *testing.T, file string, into any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// wrappers put a pod's metadata and spec into each kind `inject -f` handles, named name, and
// return where the pod template ends up in the output.
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

// TestInjectSharesWebhookGoldens: every case of the webhook's golden files, as a Pod and as the
// template of each workload kind (named as the webhook names the instance), injected offline,
// gives the webhook's golden pod: the same core makes the same decisions.
func TestInjectSharesWebhookGoldens(t *testing.T) {
	inputs, err := filepath.Glob("../inject/testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no webhook golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		var pod, golden corev1.Pod
		readYAML(t, in, &pod)
		readYAML(t, strings.TrimSuffix(in, ".in.yaml")+".golden.yaml", &golden)
		instance := golden.Labels[inject.LabelInstance]
		if instance == "" {
			t.Fatalf("%s: golden pod has no instance label", name)
		}
		for _, w := range wrappers {
			t.Run(name+"/"+w.kind, func(t *testing.T) {
				manifest, err := yaml.Marshal(w.wrap(instance, pod.DeepCopy()))
				if err != nil {
					t.Fatal(err)
				}
				code, stdout, stderr := injectCLI(t, string(manifest), append([]string{"-f", "-"}, goldenImages...)...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				got := w.template(t, []byte(normalizeVersion(stdout)))
				if d := cmp.Diff(golden.Spec, got.Spec); d != "" {
					t.Errorf("injected pod spec differs from the webhook's golden (-webhook +inject -f):\n%s", d)
				}
				if d := cmp.Diff(golden.Labels, got.Labels); d != "" {
					t.Errorf("labels differ from the webhook's golden (-webhook +inject -f):\n%s", d)
				}
				if d := cmp.Diff(golden.Annotations, got.Annotations); d != "" {
					t.Errorf("annotations differ from the webhook's golden (-webhook +inject -f):\n%s", d)
				}

				// Injecting the output again changes nothing, byte for byte.
				code, again, stderr := injectCLI(t, stdout, append([]string{"-f", "-"}, goldenImages...)...)
				if code != 0 || again != stdout {
					t.Errorf("second injection: exit %d, output changed: %v\n%s", code, again != stdout, stderr)
				}
			})
		}
	}
}

// TestInjectGoldenManifests injects the multi-document files of testdata/inject and compares
// with their .golden.yaml (refresh: go test ./internal/cli/ -run TestInjectGolden -update).
// Documents without anything to inject are written back byte for byte, in order; the output
// injected again is the output.
func TestInjectGoldenManifests(t *testing.T) {
	inputs, err := filepath.Glob("testdata/inject/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			code, stdout, stderr := injectCLI(t, "", append([]string{"-f", in}, goldenImages...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := normalizeVersion(stdout)
			golden.Compare(t, strings.TrimSuffix(in, ".in.yaml")+".golden.yaml", "output", []byte(got))

			// Every input document without a labelled pod (template) is in the output as is.
			input, _ := os.ReadFile(in)
			for _, doc := range strings.Split(string(input), "\n---\n") {
				if !strings.Contains(doc, inject.LabelInject+`: "true"`) && !strings.Contains(got, strings.TrimSpace(doc)) {
					t.Errorf("document not written back unchanged:\n%s", doc)
				}
			}
			if n, m := strings.Count(string(input), "\n---\n"), strings.Count(got, "\n---\n"); n != m {
				t.Errorf("%d document separators in, %d out", n, m)
			}

			code, again, stderr := injectCLI(t, stdout, append([]string{"-f", "-"}, goldenImages...)...)
			if code != 0 {
				t.Fatalf("second injection: exit %d: %s", code, stderr)
			}
			if d := cmp.Diff(stdout, again); d != "" {
				t.Errorf("injecting the output again changed it (-once +twice):\n%s", d)
			}
			if stderr != "" {
				t.Errorf("second injection warned: %s", stderr)
			}
		})
	}
}

// TestInjectInstanceNames: the instance label is the workload's name, as the webhook derives it
// from the pods' controller; a pinned label wins; a Job with generateName gives its prefix.
func TestInjectInstanceNames(t *testing.T) {
	code, stdout, stderr := injectCLI(t, "", "-f", "testdata/inject/workloads.in.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := map[string]string{"Deployment/storefront": "storefront", "StatefulSet/accounts": "shop-accounts",
		"DaemonSet/edge-auth": "edge-auth", "CronJob/nightly-report": "nightly-report", "Job/": "import-users"}
	got := map[string]string{}
	for _, doc := range strings.Split(stdout, "\n---\n") {
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
		if v, ok := tmpl.Labels[inject.LabelInstance]; ok {
			got[obj.Kind+"/"+obj.Metadata.Name] = v
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("instance labels (-want +got):\n%s", d)
	}
	// The webhook's warnings, once per object, on stderr.
	if !strings.Contains(stderr, "Warning: DaemonSet edge-auth (testdata/inject/workloads.in.yaml, document 7): "+inject.AnnotationSecretsSecret+" is not set") {
		t.Errorf("no warning for the DaemonSet without secrets-secret; stderr:\n%s", stderr)
	}
}

// TestInjectDenials: invalid annotations or a clash fail the command with the webhook's own
// denial message, naming each object and where it is; nothing is written.
func TestInjectDenials(t *testing.T) {
	bad := map[string]string{
		inject.AnnotationFeatures:  "local-idp,teleport",
		inject.AnnotationPublicURL: "not a url",
		inject.Prefix + "colour":   "blue",
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{inject.LabelInject: "true"}, Annotations: bad},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	_, webhookErr := inject.Inject(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: pod.Labels, Annotations: bad}, Spec: pod.Spec}, "default", inject.Options{})
	if webhookErr == nil {
		t.Fatal("the core accepts the bad annotations")
	}
	dep, _ := yaml.Marshal(wrappers[1].wrap("shop", pod))
	clash := pod.DeepCopy()
	clash.Annotations = nil
	clash.Spec.Containers[0].Name = "kratos"
	job, _ := yaml.Marshal(wrappers[4].wrap("report", clash))
	input := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\n" + string(dep) + "---\n" + string(job)

	code, stdout, stderr := injectCLI(t, input, "-f", "-")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("something was written although objects failed:\n%s", stdout)
	}
	for _, want := range []string{
		"2 objects cannot be injected (nothing was written)",
		"Deployment shop (stdin, document 2): " + webhookErr.Error(),
		"Job report (stdin, document 3): cannot inject Kratos: spec.containers[kratos]: container name is reserved",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}

	// One failing object: its message alone.
	code, _, stderr = injectCLI(t, string(dep), "-f", "-")
	if want := "error: Deployment shop (stdin, document 1): " + webhookErr.Error() + "\n"; code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

func TestInjectUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "-f is required"},
		{[]string{"-f", "-", "-f", "-"}, 2, "standard input can be read only once"},
		{[]string{"-f", "-", "--kratos-image", "Not An Image"}, 2, `--kratos-image: "Not An Image" is not an image reference`},
		{[]string{"-f", "-", "--injector-image", ""}, 2, "--injector-image"},
		{[]string{"-f", filepath.Join(dir, "missing.yaml")}, 1, "no such file"},
		{[]string{"-f", dir}, 1, "holds no *.yaml, *.yml or *.json file"},
		{[]string{"-f", "-", "extra"}, 2, "accepts no arguments"},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			code, _, stderr := injectCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}

	// Not YAML: named by its place.
	code, _, stderr := injectCLI(t, "kind: Pod\n---\n: : :\n  - [\n", "-f", "-")
	if code != 1 || !strings.Contains(stderr, "stdin, document 2: not YAML") {
		t.Errorf("bad YAML: exit %d, %q", code, stderr)
	}
}

// TestInjectDirectory reads a directory's manifests in name order and leaves everything that is
// not labelled byte-identical, JSON included.
func TestInjectDirectory(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.json":    `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "json"}, "spec": {"containers": [{"name": "a", "image": "a"}]}}`,
		"b.yaml":    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n  labels: {kratos-injector.io/inject: \"true\"}\nspec:\n  containers: [{name: a, image: a}]\n",
		"c.yml":     "# just a comment\n",
		"notes.txt": "not read",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := injectCLI(t, "", "-f", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	docs := strings.Split(stdout, "---\n")
	if len(docs) != 3 || docs[0] != files["a.json"]+"\n" || !strings.Contains(docs[1], "name: kratos-config") || docs[2] != files["c.yml"] {
		t.Errorf("output:\n%s", stdout)
	}
}
