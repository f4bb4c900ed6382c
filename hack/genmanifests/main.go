// Command genmanifests writes manifests/ from the Helm chart charts/kratos-injector (`make
// manifests`): for each TLS mode, manifests/<mode>/kratos-injector.yaml (the chart rendered with
// its default values, no Helm labels or hooks, with the Namespace) and a kustomization listing
// it. The chart is the one source; charts' TestManifestsUpToDate fails when manifests/ drifts.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kratos-injector/kratos-injector/charts"
)

func main() {
	dir := "manifests"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	files, err := charts.Manifests()
	if err != nil {
		fmt.Fprintln(os.Stderr, "genmanifests:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "genmanifests:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "genmanifests:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
}
