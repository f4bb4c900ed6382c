package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-injector/kratos-injector/internal/golden"
)

// warningsFile is the golden file holding Result.Warnings, one a line.
const warningsFile = "warnings.txt"

// fixedRand is a deterministic stand-in for crypto/rand, so random secrets are stable in goldens.
type fixedRand struct{ n byte }

func (r *fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// goldenCases lists testdata/<case> directories: each holds spec.json and inputs/ (mounted
// Secrets and ConfigMaps, kubelet layout), and golden/ (the expected files).
func goldenCases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("testdata", e.Name(), "spec.json")); err == nil {
			cases = append(cases, e.Name())
		}
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases under testdata")
	}
	return cases
}

// renderCase renders testdata/<name> as the pod would (default config and data dirs).
func renderCase(t *testing.T, name string) *Result {
	t.Helper()
	dir := filepath.Join("testdata", name)
	b, err := os.ReadFile(filepath.Join(dir, "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := UnmarshalSpec(string(b))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Render(spec, RenderOptions{InputDir: filepath.Join(dir, "inputs"), Rand: &fixedRand{}})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return res
}

// outputFiles is what a case's golden dir holds: the rendered files plus the warnings.
func outputFiles(res *Result) map[string]string {
	out := map[string]string{}
	for k, v := range res.Files {
		out[k] = string(v)
	}
	out[warningsFile] = ""
	for _, w := range res.Warnings {
		out[warningsFile] += w + "\n"
	}
	return out
}

func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGolden(t *testing.T) {
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			got := outputFiles(renderCase(t, name))
			golden.CompareTree(t, filepath.Join("testdata", name, "golden"), "rendered files", got)
		})
	}
}

// TestRenderIsDeterministic guards the goldens (and the spec hash idea) against map-order
// or other run-to-run differences.
func TestRenderIsDeterministic(t *testing.T) {
	for _, name := range goldenCases(t) {
		a, b := outputFiles(renderCase(t, name)), outputFiles(renderCase(t, name))
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s: two renders differ:\n%s", name, diff)
		}
	}
}
