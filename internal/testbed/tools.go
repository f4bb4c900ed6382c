package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ToolsDir is where hack/tools.sh installs the component binaries: $KRATOS_INJECTOR_TOOLS, else
// $KRATOS_INJECTOR_CACHE/bin, else ${XDG_CACHE_HOME:-$HOME/.cache}/kratos-injector/bin.
func ToolsDir() string {
	if d := os.Getenv("KRATOS_INJECTOR_TOOLS"); d != "" {
		return d
	}
	cache := os.Getenv("KRATOS_INJECTOR_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "kratos-injector")
	}
	return filepath.Join(cache, "bin")
}

// Tool returns the path of a built component, or an error telling how to build it. The e2e suite
// never skips for a missing component: `make test` builds them first.
func Tool(name string) (string, error) {
	p := filepath.Join(ToolsDir(), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("component %s not found at %s: run `make tools` (hack/tools.sh) to build it", name, p)
	}
	return p, nil
}

// ProjectBin returns a binary built by `make build` (bin/<name> at the repository root, or
// $KRATOS_INJECTOR_PROJECT_BIN).
func ProjectBin(name string) (string, error) {
	dir := os.Getenv("KRATOS_INJECTOR_PROJECT_BIN")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `make build` first", name, p)
	}
	return p, nil
}

// RepoRoot finds the module root by walking up to go.mod.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("go.mod not found above %s", wd)
		}
	}
}

// HostTool finds a program on PATH or in the given fallback locations.
func HostTool(name string, fallbacks ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, f := range fallbacks {
		if m, _ := filepath.Glob(f); len(m) > 0 {
			return m[len(m)-1], nil
		}
	}
	return "", fmt.Errorf("%s not found: run `make tools` (installs Debian packages)", name)
}
