package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

var created = time.Unix(1764000000, 0).UTC()

func fakeIndex(t *testing.T, bin string) v1.ImageIndex {
	t.Helper()
	var imgs []v1.Image
	for _, p := range Platforms {
		bins := map[string][]byte{}
		for _, c := range Commands {
			bins[c.Path] = []byte(bin + p.Architecture + path.Base(c.Path))
		}
		img, err := Image(bins, p, created, "v9.9.9")
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idx, err := Index(imgs, "v9.9.9", created)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// TestReproducible: the same inputs give the same index digest; another binary another one.
func TestReproducible(t *testing.T) {
	a, b, c := fakeIndex(t, "bin"), fakeIndex(t, "bin"), fakeIndex(t, "other")
	da, _ := a.Digest()
	db, _ := b.Digest()
	dc, _ := c.Digest()
	if da != db {
		t.Errorf("same inputs, digests %s and %s", da, db)
	}
	if da == dc {
		t.Errorf("different binaries, same digest %s", da)
	}
}

// TestLayout: the index holds one image per platform, each non-root with the binary as entrypoint,
// no shell, files owned by root, every time the given one; the layout round-trips with its ref.
func TestLayout(t *testing.T) {
	idx := fakeIndex(t, "bin")
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, idx, Repository+":v9.9.9"); err != nil {
		t.Fatal(err)
	}
	got, ref, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ref != Repository+":v9.9.9" {
		t.Errorf("ref %q", ref)
	}
	want, _ := idx.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("layout index %s, built %s", d, want)
	}
	m, err := got.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != len(Platforms) {
		t.Fatalf("%d manifests, want %d", len(m.Manifests), len(Platforms))
	}
	for _, p := range Platforms {
		img, err := PlatformImage(got, p)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != p.OS || cf.Architecture != p.Architecture || cf.Config.User != User ||
			strings.Join(cf.Config.Entrypoint, " ") != BinaryPath || !cf.Created.Equal(created) {
			t.Errorf("%s: config %+v", p.Architecture, cf)
		}
		files := layerFiles(t, img)
		for _, c := range Commands {
			if got := files[strings.TrimPrefix(c.Path, "/")]; string(got.data) != "bin"+p.Architecture+path.Base(c.Path) || got.mode&0o777 != 0o755 {
				t.Errorf("%s: %s %q mode %o", p.Architecture, c.Path, got.data, got.mode)
			}
		}
		if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd lacks the nonroot user", p.Architecture)
		}
		for n, h := range files {
			if strings.HasSuffix(n, "/sh") || strings.Contains(n, "busybox") {
				t.Errorf("%s: a shell in the image: %s", p.Architecture, n)
			}
			if h.uid != 0 || !h.mtime.Equal(created) {
				t.Errorf("%s: %s uid %d mtime %s", p.Architecture, n, h.uid, h.mtime)
			}
		}
		if len(files) != 6+len(Commands) { // etc/, etc/group, etc/passwd, usr/, usr/local/, usr/local/bin/, the binaries: nothing else
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			t.Errorf("%s: files %v", p.Architecture, names)
		}
	}
	// The bed imports a docker tarball of the host platform's image.
	img, err := PlatformImage(got, HostPlatform())
	if err != nil {
		t.Fatal(err)
	}
	tb := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteDockerTarball(tb, img, "localhost/x/y:bed"); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(tb, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A docker tarball has a docker manifest, so compare the config (the image ID containerd shows).
	if a, b := configName(t, back), configName(t, img); a != b {
		t.Errorf("tarball image config %s, layout image config %s", a, b)
	}
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type file struct {
	data  []byte
	uid   int
	mode  int64
	mtime time.Time
}

func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			t.Fatal(err)
		}
		files[h.Name] = file{data: b.Bytes(), uid: h.Uid, mode: h.Mode, mtime: h.ModTime}
	}
	return files
}

// TestDockerfileMatches: the Dockerfile builds the same layout: scratch base, the rootfs files,
// the binary at BinaryPath compiled with the same flags, the same user, PATH and entrypoint.
func TestDockerfileMatches(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"FROM scratch",
		"COPY internal/ociimage/rootfs/ /",
		"USER " + User,
		"ENV " + PathEnv,
		`ENTRYPOINT ["` + BinaryPath + `"]`,
		"CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false",
		`-ldflags "` + LDFlags("${VERSION}") + `"`,
	} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// Every binary of the image, built from its package and copied to its path.
	var names []string
	for _, c := range Commands {
		name := path.Base(c.Path)
		names = append(names, name)
		if c.Package != "./cmd/"+name {
			t.Errorf("command %s is built from %s, not ./cmd/%s: the Dockerfile's loop assumes it", c.Path, c.Package, name)
		}
		if want := "COPY --from=build /out/" + name + " " + c.Path; !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if want := "for cmd in " + strings.Join(names, " ") + "; do"; !strings.Contains(string(df), want) {
		t.Errorf("Dockerfile lacks %q", want)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "LDFLAGS := "+LDFlags("$(VERSION)")+"\n") {
		t.Errorf("the Makefile's LDFLAGS differ from %q", LDFlags("$(VERSION)"))
	}
}

// The injection refers to the image's binaries by path (the courier gate it copies) and by
// name on PATH (render, metrics-proxy): the image must carry them there.
func TestInjectionFindsTheBinaries(t *testing.T) {
	if inject.GateSource != GatePath {
		t.Errorf("inject.GateSource %s, image %s", inject.GateSource, GatePath)
	}
	onPath := map[string]bool{}
	for _, c := range Commands {
		if path.Dir(c.Path) == "/usr/local/bin" && strings.Contains(PathEnv, "/usr/local/bin") {
			onPath[path.Base(c.Path)] = true
		}
	}
	for _, cmd := range [][]string{inject.RenderCommand, inject.MetricsProxyCommand} {
		if !onPath[cmd[0]] {
			t.Errorf("the injected command %v is not on the image's PATH", cmd)
		}
	}
}
