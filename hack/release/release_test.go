package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/charts"
	"github.com/kratos-injector/kratos-injector/internal/ociimage"
)

const testVersion = "v0.0.1-test"

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// krewValidator builds (once, cached) and returns krew's validate-krew-manifest.
func krewValidator(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../tools.sh", "validate-krew-manifest").Output()
	if err != nil {
		t.Fatalf("hack/tools.sh validate-krew-manifest: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "validate-krew-manifest")
}

// TestRelease runs the release into a temp dir and checks what a user would download: the
// archives hold the right files and binaries for their OS and architecture (by their ELF, Mach-O
// and PE headers), the checksums match, the krew manifest passes krew's own validator and names
// the archives' real sha256s, and the install YAML and the chart pin the image by the digest of
// the image index written next to them. A second run gives the same bytes (reproducible).
// Cross-compiling 2 webhook and 6 plugin binaries takes minutes on a cold build cache.
func TestRelease(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Fixed, so that a commit made while the test runs (the default is HEAD's commit time)
	// cannot make the second run differ.
	t.Setenv("SOURCE_DATE_EPOCH", "1764000000")
	out := filepath.Join(t.TempDir(), "dist")
	o := Options{Root: root, Version: testVersion, Out: out, KrewValidator: krewValidator(t), Log: logWriter{t}}
	start := time.Now()
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("release written in %s", time.Since(start).Round(time.Millisecond))

	// The files, exactly.
	want := []string{"checksums.txt", "image", "kratos-injector-0.0.1-test.tgz", "kratos-injector-image_" + testVersion + ".oci.tar",
		"kratos-injector_" + testVersion + "_cert-manager.yaml", "kratos-injector_" + testVersion + "_self-signed.yaml", "kratos.yaml"}
	for _, p := range Platforms {
		want = append(want, fmt.Sprintf("kubectl-kratos_%s_%s_%s.tar.gz", testVersion, p[0], p[1]))
	}
	slices.Sort(want)
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("dist holds\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	// Checksums: every file but checksums.txt and the layout directory, each sum right.
	sums := map[string]string{}
	f, err := os.Open(filepath.Join(out, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("checksums.txt line %q", sc.Text())
		}
		if real, err := sha256File(filepath.Join(out, name)); err != nil || real != sum {
			t.Errorf("checksums.txt: %s %s, file's sha256 %s (%v)", sum, name, real, err)
		}
		sums[name] = sum
	}
	f.Close()
	for _, n := range want {
		if _, ok := sums[n]; !ok && n != "checksums.txt" && n != "image" {
			t.Errorf("checksums.txt lacks %s", n)
		}
	}

	// Archives: the binary for the right platform, LICENSE, README.md, nothing else.
	license, _ := os.ReadFile(filepath.Join(root, "LICENSE"))
	for _, p := range Platforms {
		name := fmt.Sprintf("kubectl-kratos_%s_%s_%s.tar.gz", testVersion, p[0], p[1])
		files := untar(t, filepath.Join(out, name))
		bin := "kubectl-kratos"
		if p[0] == "windows" {
			bin += ".exe"
		}
		var names []string
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		if wantNames := []string{"LICENSE", "README.md", bin, "kubectl_complete-kratos"}; !slices.Equal(names, wantNames) {
			t.Errorf("%s holds %v, want %v", name, names, wantNames)
		}
		if !bytes.Equal(files["LICENSE"], license) {
			t.Errorf("%s: LICENSE differs from the repository's", name)
		}
		if err := checkBinary(p[0], p[1], files[bin]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// The krew manifest: the archives' URLs and sha256s, krew's own validator (Run ran it; run it
	// again here so that a Run that skipped it would fail).
	if b, err := exec.Command(o.KrewValidator, "-manifest", filepath.Join(out, "kratos.yaml"), "-skip-install").CombinedOutput(); err != nil {
		t.Errorf("validate-krew-manifest: %v\n%s", err, b)
	}
	checkKrew(t, filepath.Join(out, "kratos.yaml"), sums)

	// The image: the layout's index digest is the one everything pins.
	idx, ref, err := ociimage.ReadLayout(filepath.Join(out, "image"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	if ref != ociimage.Repository+":"+testVersion || d.String() != res.ImageDigest {
		t.Errorf("layout ref %s digest %s, release says %s", ref, d, res.ImageRef)
	}
	pinned := ociimage.Repository + ":" + testVersion + "@" + d.String()
	ociTar := untarPlain(t, filepath.Join(out, "kratos-injector-image_"+testVersion+".oci.tar"))
	if !bytes.Contains(ociTar["index.json"], []byte(d.String())) {
		t.Errorf("the image tarball's index.json does not name %s", d)
	}
	for _, mode := range charts.TLSModes {
		y, err := os.ReadFile(filepath.Join(out, "kratos-injector_"+testVersion+"_"+mode+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if img := deploymentImage(t, y); img != pinned {
			t.Errorf("%s install YAML runs %q, want %q", mode, img, pinned)
		}
	}
	c, err := loader.Load(filepath.Join(out, "kratos-injector-0.0.1-test.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Version != "0.0.1-test" || c.Metadata.AppVersion != testVersion {
		t.Errorf("chart version %s appVersion %s", c.Metadata.Version, c.Metadata.AppVersion)
	}
	m, _, err := charts.Render(c, "ki", "kratos-injector", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img := deploymentImage(t, []byte(m)); img != pinned {
		t.Errorf("the packaged chart runs %q, want %q", img, pinned)
	}

	// The plugin for this machine defaults `inject -f` to the released image, digest included.
	host := untar(t, filepath.Join(out, fmt.Sprintf("kubectl-kratos_%s_linux_%s.tar.gz", testVersion, ociimage.HostPlatform().Architecture)))
	plugin := filepath.Join(t.TempDir(), "kubectl-kratos")
	if err := os.WriteFile(plugin, host["kubectl-kratos"], 0o755); err != nil {
		t.Fatal(err)
	}
	help, err := exec.Command(plugin, "inject", "--help").CombinedOutput()
	if err != nil || !bytes.Contains(help, []byte(pinned)) {
		t.Errorf("kubectl-kratos inject --help (%v) does not default --injector-image to %s:\n%s", err, pinned, help)
	}

	// Reproducible: a second run writes the same archives, image and install YAML.
	start = time.Now()
	o.Out = filepath.Join(t.TempDir(), "dist2")
	o.KrewValidator = ""
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	t.Logf("second release written in %s", time.Since(start).Round(time.Millisecond))
	for name, sum := range sums {
		if strings.HasSuffix(name, ".tgz") {
			continue // helm's packager stamps the time of packaging
		}
		if again, err := sha256File(filepath.Join(o.Out, name)); err != nil || again != sum {
			t.Errorf("%s: %s then %s (%v): not reproducible", name, sum, again, err)
		}
	}
}

func checkBinary(goos, goarch string, b []byte) error {
	r := bytes.NewReader(b)
	switch goos {
	case "linux":
		f, err := elf.NewFile(r)
		if err != nil {
			return fmt.Errorf("not ELF: %w", err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != want {
			return fmt.Errorf("ELF machine %s, want %s", f.Machine, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return fmt.Errorf("dynamically linked (PT_INTERP): want static")
			}
		}
	case "darwin":
		f, err := macho.NewFile(r)
		if err != nil {
			return fmt.Errorf("not Mach-O: %w", err)
		}
		want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != want {
			return fmt.Errorf("Mach-O cpu %s, want %s", f.Cpu, want)
		}
	case "windows":
		f, err := pe.NewFile(r)
		if err != nil {
			return fmt.Errorf("not PE: %w", err)
		}
		want := map[string]uint16{"amd64": pe.IMAGE_FILE_MACHINE_AMD64, "arm64": pe.IMAGE_FILE_MACHINE_ARM64}[goarch]
		if f.Machine != want {
			return fmt.Errorf("PE machine %#x, want %#x", f.Machine, want)
		}
	}
	return nil
}

func checkKrew(t *testing.T, path string, sums map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Metadata struct{ Name string }
		Spec     struct {
			Version   string
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string } `json:"selector"`
				URI      string                                  `json:"uri"`
				Sha256   string                                  `json:"sha256"`
				Bin      string                                  `json:"bin"`
			}
		}
	}
	if err := sigsyaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("kratos.yaml: %v", err)
	}
	if p.Metadata.Name != "kratos" || p.Spec.Version != testVersion || len(p.Spec.Platforms) != len(Platforms) {
		t.Fatalf("kratos.yaml: name %s version %s, %d platforms", p.Metadata.Name, p.Spec.Version, len(p.Spec.Platforms))
	}
	for _, pl := range p.Spec.Platforms {
		osName, arch := pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]
		name := fmt.Sprintf("kubectl-kratos_%s_%s_%s.tar.gz", testVersion, osName, arch)
		if pl.URI != downloadBase+testVersion+"/"+name || pl.Sha256 != sums[name] || sums[name] == "" {
			t.Errorf("krew %s/%s: uri %s sha256 %s, want %s with sha256 %s", osName, arch, pl.URI, pl.Sha256, name, sums[name])
		}
		wantBin := "kubectl-kratos"
		if osName == "windows" {
			wantBin += ".exe"
		}
		if pl.Bin != wantBin {
			t.Errorf("krew %s/%s: bin %s", osName, arch, pl.Bin)
		}
	}
}

func deploymentImage(t *testing.T, y []byte) string {
	t.Helper()
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(y), 4096)
	for {
		var dep appsv1.Deployment
		if err := d.Decode(&dep); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if dep.Kind == "Deployment" {
			return dep.Spec.Template.Spec.Containers[0].Image
		}
	}
	t.Fatal("no Deployment")
	return ""
}

func untar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return readTar(t, gz)
}

func untarPlain(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readTar(t, f)
}

func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}
