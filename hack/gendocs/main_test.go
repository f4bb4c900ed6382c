package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

const repoRoot = "../.."

// TestGeneratedDocsUpToDate fails while a committed generated file differs from what the
// generator writes: refresh with `go run ./hack/gendocs` (from the repository root).
func TestGeneratedDocsUpToDate(t *testing.T) {
	for _, o := range outputs {
		want, err := o.generate()
		if err != nil {
			t.Fatalf("%s: %v", o.path, err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(o.path)))
		if err != nil {
			t.Errorf("%s: %v; run `go run ./hack/gendocs` from the repository root", o.path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with the code (first difference at line %d); run `go run ./hack/gendocs` from the repository root",
				o.path, firstDiffLine(got, want))
		}
	}
}

func firstDiffLine(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// Every setting's documented example is valid, and all of them together: the example in the
// docs is a pod template the webhook accepts.
func TestAnnotationExamplesParse(t *testing.T) {
	for _, d := range inject.Annotations {
		if d.Kind != inject.KindSetting {
			continue
		}
		if d.Example == "" || d.Doc == "" || d.Default == "" {
			t.Errorf("%s: empty example, doc or default", d.Name)
		}
	}
	if _, err := inject.ParseAnnotations(exampleAnnotations(), ""); err != nil {
		t.Errorf("the documented example annotations are refused: %v", err)
	}
}

// renderWith renders the spec of one annotation naming an object "obj" whose data is data,
// mounted as the injected pod mounts it.
func renderWith(t *testing.T, f objectFormat, data map[string]string) error {
	t.Helper()
	dir := t.TempDir()
	objDir := config.SecretDir(dir, "obj")
	if f.Kind == "ConfigMap" {
		objDir = config.ConfigMapDir(dir, "obj")
	}
	if err := os.MkdirAll(objDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(objDir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := inject.ParseAnnotations(map[string]string{f.Annotation: "obj"}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Render(spec, config.RenderOptions{InputDir: dir})
	return err
}

// TestObjectFormatsMatchParsers holds the Secret and ConfigMap tables to the parsers of
// internal/config: each example renders; removing a key documented as required fails naming
// it; the IdP keys and provider types are exactly those the IdP parser accepts.
func TestObjectFormatsMatchParsers(t *testing.T) {
	for _, f := range objectFormats {
		t.Run(f.Title, func(t *testing.T) {
			if err := renderWith(t, f, f.Example); err != nil {
				t.Fatalf("the documented example does not render: %v", err)
			}
			documented := map[string]bool{}
			for _, k := range f.Keys {
				documented[k.Key] = true
				for _, a := range k.Alt {
					documented[a] = true
				}
				if !k.Required {
					continue
				}
				data := map[string]string{}
				for kk, v := range f.Example {
					if kk != k.Key {
						data[kk] = v
					}
				}
				if len(data) == 0 {
					data["unrelated"] = "x" // an object with no key at all fails otherwise
				}
				err := renderWith(t, f, data)
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("key %q", k.Key)) {
					t.Errorf("without required key %s: %v", k.Key, err)
				}
			}
			for k := range f.Example {
				if !documented[k] && !strings.HasSuffix(k, ".json") {
					t.Errorf("example key %s is not documented", k)
				}
			}
		})
	}

	idp := objectFormats[slices.IndexFunc(objectFormats, func(f objectFormat) bool { return f.Annotation == inject.AnnotationIDPSecrets })]
	err := renderWith(t, idp, map[string]string{"provider": "github", "zz-unknown": "x"})
	_, accepted, ok := strings.Cut(fmt.Sprint(err), "an IdP Secret takes: ")
	if !ok {
		t.Fatalf("the IdP parser's unknown-key message changed: %v", err)
	}
	var documented []string
	for _, k := range idp.Keys {
		documented = append(documented, k.Key)
	}
	if d := diffSets(strings.Split(accepted, ", "), documented); d != "" {
		t.Errorf("IdP keys: %s", d)
	}
	err = renderWith(t, idp, map[string]string{"provider": "zz", "client_id": "a", "client_secret": "b"})
	_, providers, ok := strings.Cut(fmt.Sprint(err), "use one of: ")
	if !ok {
		t.Fatalf("the IdP parser's provider message changed: %v", err)
	}
	if d := diffSets(strings.Split(providers, ", "), oidcProviders); d != "" {
		t.Errorf("IdP provider types: %s", d)
	}
}

// diffSets describes how documented differs from parser ("" when they hold the same items).
func diffSets(parser, documented []string) string {
	var missing, extra []string
	for _, p := range parser {
		if !slices.Contains(documented, p) {
			missing = append(missing, p)
		}
	}
	for _, d := range documented {
		if !slices.Contains(parser, d) {
			extra = append(extra, d)
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("accepted by the parser but undocumented: %v; documented but refused: %v", missing, extra)
}

// TestREADMEListsEveryCommand: the README's plugin reference names every command.
func TestREADMEListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands(newRoot())[1:] {
		if !strings.Contains(string(readme), "`"+c.CommandPath()) {
			t.Errorf("README.md does not list `%s`", c.CommandPath())
		}
	}
}

// TestKrewManifest renders plugins/kratos.yaml as krew-release-bot does (text/template with
// .TagName and addURIAndSha) and checks the krew Plugin it makes.
func TestKrewManifest(t *testing.T) {
	const tag = "v1.2.3"
	funcs := template.FuncMap{"addURIAndSha": func(url, tag string) (string, error) {
		u, err := template.New("url").Parse(url)
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		if err := u.Execute(&b, struct{ TagName, Version string }{tag, strings.TrimPrefix(tag, "v")}); err != nil {
			return "", err
		}
		return fmt.Sprintf("uri: %s\n    sha256: %s", b.String(), strings.Repeat("ab", 32)), nil
	}}
	src, err := os.ReadFile(filepath.Join(repoRoot, "plugins", "kratos.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("kratos.yaml").Funcs(funcs).Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, struct{ TagName string }{tag}); err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Caveats          string `json:"caveats"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				Sha256 string `json:"sha256"`
				Bin    string `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(out.Bytes(), &p); err != nil {
		t.Fatalf("rendered manifest: %v\n%s", err, out.String())
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != "kratos" ||
		p.Spec.Version != tag || !strings.HasPrefix(p.Spec.Homepage, "https://") || p.Spec.ShortDescription == "" || p.Spec.Description == "" {
		t.Errorf("plugin: %+v", p)
	}
	// The completion script ships in the archive; the caveats say how to put it on the PATH.
	if fi, err := os.Stat(filepath.Join(repoRoot, "plugins", "kubectl_complete-kratos")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("plugins/kubectl_complete-kratos: %v (must exist and be executable)", err)
	}
	if !strings.Contains(p.Spec.Caveats, "kubectl_complete-kratos") {
		t.Errorf("the caveats do not say how to install kubectl_complete-kratos: %q", p.Spec.Caveats)
	}
	seen := map[string]bool{}
	for _, pl := range p.Spec.Platforms {
		os, arch := pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]
		seen[os+"/"+arch] = true
		bin := "kubectl-kratos"
		if os == "windows" {
			bin += ".exe"
		}
		if pl.Bin != bin || len(pl.Sha256) != 64 || !strings.HasSuffix(pl.URI, fmt.Sprintf("/%s/kubectl-kratos_%s_%s_%s.tar.gz", tag, tag, os, arch)) {
			t.Errorf("platform %s/%s: %+v", os, arch, pl)
		}
	}
	for _, want := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"} {
		if !seen[want] {
			t.Errorf("no platform %s", want)
		}
	}
}
