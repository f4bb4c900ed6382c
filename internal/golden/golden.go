// Package golden compares test output with golden files kept in testdata/ and, under
// `go test ./... -update`, rewrites them. It is the one owner of the -update flag: every
// package's golden tests import it, so the flag is registered once per test binary.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Updating reports whether the run was asked to rewrite golden files (-update).
func Updating() bool { return *update }

// Compare checks got against the golden file at path; with -update it first writes got there.
// what names the output in a failure ("injected pod", "output").
func Compare(t testing.TB, path, what string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs from %s (-golden +got); run go test with -update if intended:\n%s", what, path, d)
	}
}

// CompareTree checks a set of files (path relative to dir, with slashes -> content) against
// the golden directory dir; with -update it first replaces dir with exactly those files.
func CompareTree(t testing.TB, dir, what string, got map[string]string) {
	t.Helper()
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		for rel, content := range got {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := ReadTree(t, dir)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s differs from %s (-golden +got); run go test with -update if intended:\n%s", what, dir, d)
	}
}

// ReadTree reads every regular file under dir, keyed by its slash-separated path relative to
// dir.
func ReadTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("read golden %s: %v (run go test with -update to create it)", dir, err)
	}
	return files
}

// Paths returns the inputs matching pattern, sorted, failing the test when there are none (a
// golden test that finds no cases must not pass).
func Paths(t testing.TB, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("no golden inputs match %s: %v", pattern, err)
	}
	sort.Strings(m)
	return m
}
