package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// The injection itself, kind by kind, is internal/inject's (its manifest goldens); these tests
// check that `kubectl kratos inject` wires it up: -f files, directories and stdin, the image
// flags, warnings on stderr, errors and exit codes.

// The images of internal/inject's golden files.
const goldenInjectorImage = "ghcr.io/kratos-injector/kratos-injector:test"

var goldenImages = []string{"--injector-image", goldenInjectorImage, "--kratos-image", inject.DefaultKratosImage}

// manifestsDir holds internal/inject's manifest goldens: realistic inputs.
const manifestsDir = "../inject/testdata/manifests"

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

// coreInject is what internal/inject makes of manifests with the images of goldenImages, and
// what the plugin must print for it: the output, and the warnings as stderr.
func coreInject(t *testing.T, manifests ...inject.Manifest) (stdout, stderr string, err error) {
	t.Helper()
	var out bytes.Buffer
	report, err := inject.InjectManifests(&out, inject.Options{InjectorImage: goldenInjectorImage, KratosImage: inject.DefaultKratosImage}, manifests...)
	if err != nil {
		return "", "", err
	}
	var warnings strings.Builder
	for _, w := range report.Warnings {
		fmt.Fprintf(&warnings, "Warning: %s\n", w)
	}
	return out.String(), warnings.String(), nil
}

func readManifest(t *testing.T, name string) inject.Manifest {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return inject.Manifest{Name: name, Data: b}
}

// TestInjectFiles: several -f, in order, give internal/inject's output for them, with its
// warnings on stderr; the same through stdin.
func TestInjectFiles(t *testing.T) {
	workloads, list := filepath.Join(manifestsDir, "workloads.in.yaml"), filepath.Join(manifestsDir, "list.in.yaml")
	wantOut, wantErr, err := coreInject(t, readManifest(t, workloads), readManifest(t, list))
	if err != nil {
		t.Fatal(err)
	}
	if wantErr == "" {
		t.Fatal("no warnings: the test checks nothing about stderr")
	}
	code, stdout, stderr := injectCLI(t, "", append([]string{"-f", workloads, "-f", list}, goldenImages...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if d := cmp.Diff(wantOut, stdout); d != "" {
		t.Errorf("stdout (-internal/inject +plugin):\n%s", d)
	}
	if d := cmp.Diff(wantErr, stderr); d != "" {
		t.Errorf("stderr (-internal/inject +plugin):\n%s", d)
	}

	// Standard input: the same output; the warnings name it.
	in := readManifest(t, workloads)
	code, stdout, stderr = injectCLI(t, string(in.Data), append([]string{"-f", "-"}, goldenImages...)...)
	in.Name = "stdin"
	wantOut, wantErr, err = coreInject(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || stdout != wantOut || stderr != wantErr {
		t.Errorf("-f -: exit %d, stdout as internal/inject's: %v, stderr:\n%s\nwant:\n%s", code, stdout == wantOut, stderr, wantErr)
	}
	if !strings.Contains(stderr, "Warning: DaemonSet edge-auth (stdin, document 7): "+inject.AnnotationSecretsSecret+" is not set") {
		t.Errorf("no warning for the DaemonSet without secrets-secret; stderr:\n%s", stderr)
	}
}

// TestInjectDenials: objects that cannot be injected fail the command (exit 1) with
// internal/inject's message, which names each of them; nothing is written.
func TestInjectDenials(t *testing.T) {
	const dep = `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  template:
    metadata:
      labels: {kratos-injector.io/inject: "true"}
      annotations: {kratos-injector.io/features: "local-idp,teleport", kratos-injector.io/colour: blue}
    spec:
      containers: [{name: app, image: "app:1"}]
`
	const job = `apiVersion: batch/v1
kind: Job
metadata: {name: report}
spec:
  template:
    metadata:
      labels: {kratos-injector.io/inject: "true"}
    spec:
      containers: [{name: kratos, image: "app:1"}]
`
	for name, input := range map[string]string{"one": dep, "two": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\n" + dep + "---\n" + job} {
		t.Run(name, func(t *testing.T) {
			_, _, coreErr := coreInject(t, inject.Manifest{Name: "stdin", Data: []byte(input)})
			if coreErr == nil {
				t.Fatal("internal/inject accepts the input")
			}
			code, stdout, stderr := injectCLI(t, input, "-f", "-")
			if want := "error: " + coreErr.Error() + "\n"; code != 1 || stderr != want {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
			}
			if stdout != "" {
				t.Errorf("something was written although objects failed:\n%s", stdout)
			}
		})
	}
}

// TestInjectStaleStatus: a manifest injected already, then edited, is written back as it is,
// with a warning on stderr that says what to do; the exit status is 0.
func TestInjectStaleStatus(t *testing.T) {
	const dep = `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  template:
    metadata:
      labels: {kratos-injector.io/inject: "true"}
      annotations: {kratos-injector.io/secrets-secret: shop-kratos, kratos-injector.io/smtp-secret: shop-smtp}
    spec:
      containers: [{name: app, image: "app:1"}]
`
	code, injected, stderr := injectCLI(t, dep, "-f", "-")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	edited := strings.Replace(injected, "kratos-injector.io/smtp-secret: shop-smtp", "kratos-injector.io/smtp-secret: other-smtp", 1)
	if edited == injected {
		t.Fatalf("the injected manifest has no smtp-secret annotation to edit:\n%s", injected)
	}
	code, stdout, stderr := injectCLI(t, edited, "-f", "-")
	if code != 0 || stdout != edited {
		t.Errorf("exit %d, output changed: %v; stderr: %s", code, stdout != edited, stderr)
	}
	if want := "Warning: Deployment shop (stdin, document 1): injected already with spec "; !strings.HasPrefix(stderr, want) ||
		!strings.Contains(stderr, "inject the un-injected source again") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q; want one warning starting with %q", stderr, want)
	}
}

func TestInjectUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "-f or -k is required"},
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

// TestInjectSourcesAsKubectl: -R walks subdirectories (without it they are skipped, as kubectl
// skips them), a glob pattern, an http URL (served on 127.0.0.1), comma-separated -f, and -k
// (kustomize build, as kubectl apply -k) all reach the same injection; documents it does not
// change stay byte-identical whatever the source.
func TestInjectSourcesAsKubectl(t *testing.T) {
	const untouched = "# a comment kept\napiVersion: v1\nkind: ConfigMap\nmetadata:   {name: spaced}\ndata: {k: v}\n"
	const labelled = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {kratos-injector.io/inject: \"true\"}\nspec:\n  containers: [{name: a, image: a}]\n"
	dir := t.TempDir()
	for name, content := range map[string]string{
		"top.yaml":              untouched,
		"sub/pod.yaml":          labelled,
		"sub/deeper/other.json": `{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}`,
		"sub/README.md":         "not read",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	code, flat, stderr := injectCLI(t, "", "-f", dir)
	if code != 0 || flat != untouched {
		t.Errorf("-f DIR without -R: exit %d, %q (%s); want only top.yaml, byte for byte", code, flat, stderr)
	}
	code, deep, stderr := injectCLI(t, "", "-R", "-f", dir)
	docs := strings.Split(deep, "---\n")
	// filepath.Walk's lexical order, as kubectl's: sub/deeper/other.json, sub/pod.yaml, top.yaml.
	if code != 0 || len(docs) != 3 || docs[2] != untouched ||
		docs[0] != `{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}`+"\n" || !strings.Contains(docs[1], "name: kratos-config") {
		t.Errorf("-R -f DIR: exit %d (%s), output:\n%s", code, stderr, deep)
	}
	code, glob, stderr := injectCLI(t, "", "-f", filepath.Join(dir, "t*.yaml")+","+filepath.Join(dir, "sub", "pod.yaml"))
	if code != 0 || !strings.HasPrefix(glob, untouched+"---\n") || !strings.Contains(glob, "name: kratos-config") {
		t.Errorf("-f GLOB,FILE: exit %d (%s), output:\n%s", code, stderr, glob)
	}

	// A URL: the same bytes as the file; a 404 is an error naming the URL.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app.yaml" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, untouched+"---\n"+labelled)
	}))
	defer srv.Close()
	code, fromURL, stderr := injectCLI(t, "", "-f", srv.URL+"/app.yaml")
	_, fromStdin, _ := injectCLI(t, untouched+"---\n"+labelled, "-f", "-")
	if code != 0 || fromURL != fromStdin || !strings.HasPrefix(fromURL, untouched) {
		t.Errorf("-f URL: exit %d (%s), output:\n%s", code, stderr, fromURL)
	}
	if code, _, stderr := injectCLI(t, "", "-f", srv.URL+"/missing.yaml"); code != 1 || !strings.Contains(stderr, "404") {
		t.Errorf("-f URL that is not there: exit %d, %q", code, stderr)
	}

	// -k: kustomize's build, injected; its other documents as kustomize wrote them.
	kdir := filepath.Join(t.TempDir(), "overlay")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"kustomization.yaml": "resources: [pod.yaml, cm.yaml]\nnamePrefix: prod-\n",
		"pod.yaml":           labelled,
		"cm.yaml":            untouched,
	} {
		if err := os.WriteFile(filepath.Join(kdir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, built, stderr := injectCLI(t, "", "-k", kdir)
	if code != 0 || !strings.Contains(built, "name: prod-spaced") || !strings.Contains(built, "name: prod-p") ||
		!strings.Contains(built, "name: kratos-config") || !strings.Contains(built, "kratos-injector.io/instance: prod-p") {
		t.Errorf("-k: exit %d (%s), output:\n%s", code, stderr, built)
	}
	// Injecting it again changes nothing: the injected pod passes through byte for byte.
	if code, again, _ := injectCLI(t, built, "-f", "-"); code != 0 || again != built {
		t.Errorf("injecting the -k output again changed it")
	}
	for _, bad := range [][]string{{"-k", kdir, "-f", "-"}, {"-k", kdir, "-R"}} {
		if code, _, stderr := injectCLI(t, "", bad...); code != 2 {
			t.Errorf("%q: exit %d, %q; want a usage error", bad, code, stderr)
		}
	}
}
