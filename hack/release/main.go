// Command release writes everything a release uploads into one directory (`make release
// VERSION=vX.Y.Z`, default dist/), from the sources alone (Go, no docker, no registry):
//
//	kubectl-kratos_<tag>_<os>_<arch>.tar.gz   the plugin for linux, darwin, windows x amd64, arm64
//	                                          (kubectl-kratos[.exe], LICENSE, README.md, kubectl_complete-kratos)
//	kratos-injector-image_<tag>.oci.tar       the image: the OCI layout of image/ as one tarball
//	image/                                    the multi-arch image index as an OCI image layout
//	kratos.yaml                               the krew manifest (plugins/kratos.yaml rendered with the
//	                                          archives' sha256s; validated by krew's own validator)
//	kratos-injector_<tag>_<mode>.yaml         install YAML per TLS mode (cert-manager, self-signed),
//	                                          rendered from the chart, image pinned tag@digest
//	kratos-injector-<X.Y.Z>.tgz               the Helm chart, image pinned tag@digest
//	checksums.txt                             sha256 of every file above (sha256sum -c format)
//
// The plugin binaries carry the image digest (internal/inject.InjectorImageDigest), so `kubectl
// kratos inject -f` defaults to the image the install YAML pins. Publishing: docs/releasing.md.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/kratos-injector/kratos-injector/charts"
	"github.com/kratos-injector/kratos-injector/internal/ociimage"
)

// Platforms of the plugin archives.
var Platforms = [][2]string{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

const downloadBase = "https://github.com/kratos-injector/kratos-injector/releases/download/"

var semver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$`)

// Options of a release.
type Options struct {
	Root    string // repository root
	Version string // vX.Y.Z
	Out     string // output directory (replaced)
	// KrewValidator is krew's validate-krew-manifest binary; empty skips that check (the
	// manifest is still checked here).
	KrewValidator string
	Log           io.Writer
}

// Result is what a release wrote.
type Result struct {
	ImageRef    string // repository:tag@digest
	ImageDigest string
	Files       []string // names in Out, checksummed
}

func main() {
	o := Options{Log: os.Stderr}
	flag.StringVar(&o.Version, "version", "", "release version, vX.Y.Z")
	flag.StringVar(&o.Out, "o", "dist", "output directory (replaced)")
	flag.StringVar(&o.KrewValidator, "krew-validator", "", "path of krew's validate-krew-manifest (hack/tools.sh validate-krew-manifest)")
	flag.Parse()
	var err error
	if o.Root, err = os.Getwd(); err == nil {
		var r Result
		if r, err = Run(context.Background(), o); err == nil {
			fmt.Printf("%s\n%s: %d files\n", r.ImageRef, o.Out, len(r.Files))
			return
		}
	}
	fmt.Fprintln(os.Stderr, "release:", err)
	os.Exit(1)
}

func (o Options) logf(format string, a ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "[release %s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
}

// Run writes the release into o.Out.
func Run(ctx context.Context, o Options) (Result, error) {
	var res Result
	if !semver.MatchString(o.Version) {
		return res, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH[-PRERELEASE]", o.Version)
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return res, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return res, err
	}
	created, err := ociimage.SourceDateEpoch(o.Root)
	if err != nil {
		return res, err
	}

	// 1. The image (its digest goes into everything else).
	start := time.Now()
	o.logf("image: building linux/amd64 and linux/arm64")
	idx, err := ociimage.Build(ctx, ociimage.Options{Root: o.Root, Version: o.Version, Created: created, Log: o.Log})
	if err != nil {
		return res, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return res, err
	}
	res.ImageDigest = digest.String()
	res.ImageRef = ociimage.Repository + ":" + o.Version + "@" + res.ImageDigest
	layoutDir := filepath.Join(o.Out, "image")
	if err := ociimage.WriteLayout(layoutDir, idx, ociimage.Repository+":"+o.Version); err != nil {
		return res, err
	}
	imageTar := "kratos-injector-image_" + o.Version + ".oci.tar"
	if err := tarDir(filepath.Join(o.Out, imageTar), layoutDir, created); err != nil {
		return res, err
	}
	res.Files = append(res.Files, imageTar)
	o.logf("image: %s (%s)", res.ImageRef, time.Since(start).Round(time.Millisecond))

	// 2. The plugin archives.
	license, err := os.ReadFile(filepath.Join(o.Root, "LICENSE"))
	if err != nil {
		return res, err
	}
	readme, err := os.ReadFile(filepath.Join(o.Root, "README.md"))
	if err != nil {
		return res, err
	}
	// kubectl's completion hook for the plugin (krew's caveats say where to link it).
	completion, err := os.ReadFile(filepath.Join(o.Root, "plugins", "kubectl_complete-kratos"))
	if err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp("", "kratos-injector-release-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	ldflags := ociimage.LDFlags(o.Version) + " -X github.com/kratos-injector/kratos-injector/internal/inject.InjectorImageDigest=" + res.ImageDigest
	for _, p := range Platforms {
		start := time.Now()
		bin := "kubectl-kratos"
		if p[0] == "windows" {
			bin += ".exe"
		}
		out := filepath.Join(tmp, p[0]+"-"+p[1], bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/kubectl-kratos")
		cmd.Dir = o.Root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p[0], "GOARCH="+p[1], "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("go build ./cmd/kubectl-kratos for %s/%s: %w\n%s", p[0], p[1], err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			return res, err
		}
		name := fmt.Sprintf("kubectl-kratos_%s_%s_%s.tar.gz", o.Version, p[0], p[1])
		if err := writeTarGz(filepath.Join(o.Out, name), created, []tarFile{
			{bin, 0o755, b}, {"LICENSE", 0o644, license}, {"README.md", 0o644, readme},
			{"kubectl_complete-kratos", 0o755, completion},
		}); err != nil {
			return res, err
		}
		res.Files = append(res.Files, name)
		o.logf("plugin %s/%s: %s (%s)", p[0], p[1], name, time.Since(start).Round(time.Millisecond))
	}

	// 3. The krew manifest, with the archives' sha256s.
	sums := map[string]string{}
	for _, f := range res.Files {
		s, err := sha256File(filepath.Join(o.Out, f))
		if err != nil {
			return res, err
		}
		sums[f] = s
	}
	krew, err := renderKrew(filepath.Join(o.Root, "plugins", "kratos.yaml"), o.Version, sums)
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "kratos.yaml"), krew, 0o644); err != nil {
		return res, err
	}
	if o.KrewValidator != "" {
		cmd := exec.CommandContext(ctx, o.KrewValidator, "-manifest", filepath.Join(o.Out, "kratos.yaml"), "-skip-install")
		if b, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("krew's validate-krew-manifest rejects kratos.yaml: %w\n%s", err, b)
		}
		o.logf("krew manifest: validated by krew's validate-krew-manifest")
	}
	res.Files = append(res.Files, "kratos.yaml")

	// 4. Install YAML and the chart, pinned to the image's digest.
	c, err := charts.Load()
	if err != nil {
		return res, err
	}
	chartVersion := strings.TrimPrefix(o.Version, "v")
	c.Metadata.Version, c.Metadata.AppVersion = chartVersion, o.Version
	if err := pinChartValues(c, res.ImageDigest); err != nil {
		return res, err
	}
	for _, mode := range charts.TLSModes {
		m, _, err := charts.Render(c, charts.ReleaseName, charts.Namespace, charts.ManifestValues(mode))
		if err != nil {
			return res, err
		}
		name := fmt.Sprintf("kratos-injector_%s_%s.yaml", o.Version, mode)
		head := fmt.Sprintf("# kratos-injector %s, TLS mode %s: kubectl apply --server-side -f %s\n# Image %s\n", o.Version, mode, name, res.ImageRef)
		if err := os.WriteFile(filepath.Join(o.Out, name), []byte(head+strings.TrimPrefix(m, "---\n")), 0o644); err != nil {
			return res, err
		}
		res.Files = append(res.Files, name)
	}
	chartFile, err := saveChart(c, o.Out)
	if err != nil {
		return res, err
	}
	res.Files = append(res.Files, chartFile)
	o.logf("install YAML and chart %s written", chartFile)

	// 5. Checksums.
	sort.Strings(res.Files)
	var sb strings.Builder
	for _, f := range res.Files {
		s, err := sha256File(filepath.Join(o.Out, f))
		if err != nil {
			return res, err
		}
		fmt.Fprintf(&sb, "%s  %s\n", s, f)
	}
	if err := os.WriteFile(filepath.Join(o.Out, "checksums.txt"), []byte(sb.String()), 0o644); err != nil {
		return res, err
	}
	o.logf("checksums.txt: %d files", len(res.Files))
	return res, nil
}

// renderKrew renders the krew-release-bot style template: {{ .TagName }}, and addURIAndSha
// writing the uri of a release asset and the sha256 of the archive written here.
func renderKrew(path, tag string, sums map[string]string) ([]byte, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var missing []string
	tpl, err := template.New("krew").Funcs(template.FuncMap{
		"addURIAndSha": func(uri, tag string) string {
			uri = strings.ReplaceAll(uri, "{{ .TagName }}", tag)
			name := uri[strings.LastIndex(uri, "/")+1:]
			if !strings.HasPrefix(uri, downloadBase+tag+"/") {
				missing = append(missing, uri+" (not under "+downloadBase+tag+"/)")
			}
			sum, ok := sums[name]
			if !ok {
				missing = append(missing, name)
			}
			return "uri: " + uri + "\n    sha256: " + sum
		},
	}).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, map[string]string{"TagName": tag}); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s names assets this release does not have: %v", path, missing)
	}
	return b.Bytes(), nil
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type tarFile struct {
	name string
	mode int64
	data []byte
}

// writeTarGz writes a reproducible archive: fixed order, times, owners.
func writeTarGz(path string, mtime time.Time, files []tarFile) error {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime, Typeflag: tar.TypeReg, Uname: "root", Gname: "root"}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// tarDir writes dir as an uncompressed tarball (an OCI layout: `crane push` and `skopeo copy
// oci-archive:` read it), entries sorted, times fixed.
func tarDir(path, dir string, mtime time.Time) error {
	var names []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	}); err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
