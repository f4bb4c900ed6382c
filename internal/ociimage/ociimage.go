// Package ociimage builds the kratos-injector container image with Go alone (no docker, no
// registry): the static binaries of Commands per platform on an empty base, the user 65532, no shell,
// assembled into a multi-arch OCI image index with fixed timestamps, so the same sources and the
// same SOURCE_DATE_EPOCH give the same digest.
//
// It is the one core behind every door: `make image` (hack/image), `make release` (hack/release)
// and the e2e bed (internal/testbed), which imports the host platform's image of this index into
// containerd. The Dockerfile builds the same layout for people who use docker
// (TestDockerfileMatches).
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// Repository is where releases publish the image (the manifests' and the chart's default).
	Repository = "ghcr.io/kratos-injector/kratos-injector"
	// BinaryPath is where the image carries the webhook binary; it is the entrypoint, and
	// `webhook render` (the injected init container) finds it on PATH.
	BinaryPath = "/usr/local/bin/webhook"
	// GatePath is the courier gate, which the injected kratos-config container copies into the
	// pod for the kratos-courier container (inject.GateSource).
	GatePath = "/usr/local/bin/courier-gate"
	// MetricsProxyPath is the injected kratos-metrics container's command, found on PATH.
	MetricsProxyPath = "/usr/local/bin/metrics-proxy"
	// User is the numeric non-root user and group the image runs as (distroless's nonroot).
	User = "65532:65532"
	// PathEnv is the image's PATH.
	PathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// VersionPackage is stamped with the version (-X), as `make build` does.
	VersionPackage = "github.com/kratos-injector/kratos-injector/internal/version.Version"
)

// Command is one binary of the image: the package it is built from and where it goes.
type Command struct {
	Package string // e.g. ./cmd/webhook
	Path    string // in the image
}

// Commands are the image's binaries, the entrypoint first.
var Commands = []Command{
	{Package: "./cmd/webhook", Path: BinaryPath},
	{Package: "./cmd/courier-gate", Path: GatePath},
	{Package: "./cmd/metrics-proxy", Path: MetricsProxyPath},
}

// Platforms are the platforms of the released image index.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// rootfs holds the files besides the binary (/etc/passwd and /etc/group naming the nonroot user);
// the Dockerfile copies the same directory.
//
//go:embed rootfs
var rootfs embed.FS

// LDFlags are the linker flags of the webhook binary; the Makefile's LDFLAGS are the same.
func LDFlags(version string) string {
	return "-s -w -X " + VersionPackage + "=" + version
}

// GoBuild compiles pkg (e.g. ./cmd/webhook) of the module at root for goos/goarch into out:
// static (CGO_ENABLED=0), -trimpath and no VCS stamp, so the same sources give the same bytes.
func GoBuild(ctx context.Context, root, version, goos, goarch, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", LDFlags(version), "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", pkg, goos, goarch, err, b)
	}
	return nil
}

// SourceDateEpoch is the image's creation time: $SOURCE_DATE_EPOCH if set, else the commit time
// of HEAD in root, else the Unix epoch (never the clock: the digest must not depend on when).
func SourceDateEpoch(root string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err != nil {
		// Not a git checkout (e.g. a source tarball): the epoch, never the clock.
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("git commit time %q: %w", out, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

// Image is the single-platform image around the binaries of Commands (by their Path).
func Image(binaries map[string][]byte, p v1.Platform, created time.Time, version string) (v1.Image, error) {
	for _, c := range Commands {
		if binaries[c.Path] == nil {
			return nil, fmt.Errorf("no %s binary for %s", c.Path, c.Package)
		}
	}
	layer, err := rootLayer(binaries, created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "kratos-injector ociimage: " + BinaryPath + " " + version,
	}})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Env:        []string{PathEnv},
		User:       User,
		WorkingDir: "/",
		Labels:     labels(version, created),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

func labels(version string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    "kratos-injector",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.created":  created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.source":   "https://github.com/kratos-injector/kratos-injector",
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
}

// Index assembles one image per platform into an OCI image index, in the order given.
func Index(images []v1.Image, version string, created time.Time) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, labels(version, created)).(v1.ImageIndex), nil
}

// Options of Build.
type Options struct {
	Root      string        // the module root (holds go.mod and cmd/webhook)
	Version   string        // stamped into the binary and the labels
	Created   time.Time     // every timestamp in the image (SourceDateEpoch)
	Platforms []v1.Platform // default Platforms
	Log       io.Writer     // progress; nil for none
}

// Build compiles the webhook for every platform and assembles the image index.
func Build(ctx context.Context, o Options) (v1.ImageIndex, error) {
	if len(o.Platforms) == 0 {
		o.Platforms = Platforms
	}
	tmp, err := os.MkdirTemp("", "kratos-injector-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var images []v1.Image
	for _, p := range o.Platforms {
		start := time.Now()
		bins := map[string][]byte{}
		size := 0
		for _, c := range Commands {
			bin := filepath.Join(tmp, p.OS+"-"+p.Architecture, path.Base(c.Path))
			if err := GoBuild(ctx, o.Root, o.Version, p.OS, p.Architecture, c.Package, bin); err != nil {
				return nil, err
			}
			b, err := os.ReadFile(bin)
			if err != nil {
				return nil, err
			}
			bins[c.Path], size = b, size+len(b)
		}
		img, err := Image(bins, p, o.Created, o.Version)
		if err != nil {
			return nil, fmt.Errorf("image for %s/%s: %w", p.OS, p.Architecture, err)
		}
		images = append(images, img)
		if o.Log != nil {
			d, _ := img.Digest()
			fmt.Fprintf(o.Log, "image %s/%s: %s (%d bytes of binaries, %s)\n", p.OS, p.Architecture, d, size, time.Since(start).Round(time.Millisecond))
		}
	}
	return Index(images, o.Version, o.Created)
}

// RefNameAnnotation names the index in the layout's index.json (its tag).
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout replaces dir with an OCI image layout holding idx as its only entry, named ref
// (`crane push DIR REF` pushes the index as is).
func WriteLayout(dir string, idx v1.ImageIndex, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefNameAnnotation: ref})); err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	return nil
}

// ReadLayout returns the image index a WriteLayout wrote in dir, and its ref name.
func ReadLayout(dir string) (v1.ImageIndex, string, error) {
	l, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("oci layout %s: %w (run `make image`)", dir, err)
	}
	m, err := l.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, "", fmt.Errorf("oci layout %s: want exactly one image index, found %d entries", dir, len(m.Manifests))
	}
	idx, err := l.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, "", err
	}
	return idx, m.Manifests[0].Annotations[RefNameAnnotation], nil
}

// PlatformImage returns the image of idx for os/arch (HostPlatform for the machine's own).
func PlatformImage(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("image index has no %s/%s image", p.OS, p.Architecture)
}

// HostPlatform is linux on this machine's architecture (the bed's node).
func HostPlatform() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// WriteDockerTarball writes img as a docker-save tarball tagged ref (what `ctr images import`
// and `docker load` read).
func WriteDockerTarball(path string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image tag %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// rootLayer is the image's only layer: the rootfs files and the binaries, owned by root (a
// binary is not writable by the user it runs as), with every time set to created.
func rootLayer(binaries map[string][]byte, created time.Time) (v1.Layer, error) {
	type entry struct {
		name string
		mode int64
		data []byte
		dir  bool
	}
	var entries []entry
	if err := fs.WalkDir(rootfs, "rootfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "rootfs" {
			return err
		}
		rel := strings.TrimPrefix(p, "rootfs/")
		if d.IsDir() {
			entries = append(entries, entry{name: rel + "/", mode: 0o755, dir: true})
			return nil
		}
		b, err := rootfs.ReadFile(p)
		entries = append(entries, entry{name: rel, mode: 0o644, data: b})
		return err
	}); err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	for p, data := range binaries {
		bin := strings.TrimPrefix(p, "/")
		for d := path.Dir(bin); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			entries = append(entries, entry{name: d + "/", mode: 0o755, dir: true})
		}
		entries = append(entries, entry{name: bin, mode: 0o755, data: data})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: created, Typeflag: tar.TypeReg, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
		tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}
