// Command promcrds generates the prometheus-operator CustomResourceDefinitions of
// monitoring.coreos.com/v1 (PodMonitor, ServiceMonitor, Prometheus, ...) from the operator's Go
// API types with controller-tools, as the operator's `make generate-crds` does. The operator's
// own module (with its example/ CRD YAMLs) is not available from the Go module proxy; its API
// module is, and the CRDs are a pure function of it and the controller-tools version, both pinned
// in this module's go.mod.
//
//	promcrds -out DIR   writes DIR/monitoring.coreos.com_<plural>.yaml
//
// Options, and why they differ from upstream's plain crd:crdVersions=v1:
//   - maxDescLen=0 drops every description: the Prometheus and Alertmanager CRDs carry megabytes
//     of them, which the test bed would store and the API server compile for nothing; the schema
//     (types, enums, patterns, required fields, CEL rules) is untouched, and that is what the
//     tests exercise.
//
// Each CRD is annotated with the versions it was generated from, as upstream's are:
// controller-gen.kubebuilder.io/version (controller-tools reads it from the main module, which
// here is this one, so it would say "(devel)") and operator.prometheus.io/version.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	// Imported only so that go.mod pins the API module the CRDs are generated from: the
	// generator loads its sources by import path from the module graph.
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/controller-tools/pkg/crd"
	"sigs.k8s.io/controller-tools/pkg/genall"
	"sigs.k8s.io/controller-tools/pkg/loader"
)

// apiPackage holds the monitoring.coreos.com/v1 types (its v1alpha1 and v1beta1 are not needed).
const (
	apiPackage = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	apiModule  = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"
	genModule  = "sigs.k8s.io/controller-tools"
)

func main() {
	out := flag.String("out", "", "directory to write the CRD YAMLs into (created)")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "promcrds:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	if out == "" {
		return errors.New("-out is required")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	apiVersion, genVersion, err := versions()
	if err != nil {
		return err
	}
	maxDescLen := 0
	var g genall.Generator = &crd.Generator{CRDVersions: []string{"v1"}, MaxDescLen: &maxDescLen}
	rt, err := genall.Generators{&g}.ForRoots(apiPackage)
	if err != nil {
		return fmt.Errorf("load %s: %w", apiPackage, err)
	}
	var writeErrs []error
	rt.OutputRules = genall.OutputRules{Default: annotated{
		dir:  genall.OutputToDirectory(out),
		errs: &writeErrs,
		// The generator writes this line; the operator's own CRDs carry the version without a "v".
		old: "    controller-gen.kubebuilder.io/version: (devel)\n",
		new: "    controller-gen.kubebuilder.io/version: " + genVersion + "\n" +
			"    operator.prometheus.io/version: " + strings.TrimPrefix(apiVersion, "v") + "\n",
	}}
	// Run prints each error (package loading, markers, schema) itself and reports only whether
	// any occurred.
	if rt.Run() {
		return fmt.Errorf("generating CRDs from %s failed (errors above)", apiPackage)
	}
	// The generator ignores the error of closing a file, where the rewrite happens.
	return errors.Join(writeErrs...)
}

// versions returns the versions of the API module and of controller-tools this binary was built
// with (from go.mod, through the build info).
func versions() (api, gen string, err error) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "", "", errors.New("no build info: build with module support")
	}
	for _, d := range info.Deps {
		switch d.Path {
		case apiModule:
			api = d.Version
		case genModule:
			gen = d.Version
		}
	}
	if api == "" || gen == "" {
		return "", "", fmt.Errorf("build info lacks %s or %s", apiModule, genModule)
	}
	return api, gen, nil
}

// annotated writes each file through to dir with the generator's version annotation replaced.
type annotated struct {
	dir      genall.OutputToDirectory
	old, new string
	errs     *[]error // what Close failed with: the generator drops it
}

func (a annotated) Open(pkg *loader.Package, itemPath string) (io.WriteCloser, error) {
	w, err := a.dir.Open(pkg, itemPath)
	if err != nil {
		return nil, err
	}
	return &rewriter{w: w, a: a, name: itemPath}, nil
}

// rewriter buffers a file and rewrites it on Close; the generator writes each file whole.
type rewriter struct {
	bytes.Buffer
	w    io.WriteCloser
	a    annotated
	name string
}

func (r *rewriter) Close() error {
	if err := r.rewrite(); err != nil {
		*r.a.errs = append(*r.a.errs, err)
		return err
	}
	return nil
}

func (r *rewriter) rewrite() error {
	b := r.Bytes()
	if bytes.Count(b, []byte(r.a.old)) != 1 {
		_ = r.w.Close()
		// A different controller-tools output format: fail rather than ship unannotated CRDs.
		return fmt.Errorf("%s: want exactly one %q", r.name, strings.TrimSpace(r.a.old))
	}
	b = bytes.Replace(b, []byte(r.a.old), []byte(r.a.new), 1)
	if _, err := r.w.Write(b); err != nil {
		_ = r.w.Close()
		return fmt.Errorf("write %s: %w", r.name, err)
	}
	if err := r.w.Close(); err != nil {
		return fmt.Errorf("close %s: %w", r.name, err)
	}
	return nil
}
