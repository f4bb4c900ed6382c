package testbed

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kratos-injector/kratos-injector/internal/ociimage"
)

// Images the bed builds without a registry (go-containerregistry, hack/tools/images/mkimg) and
// imports into the real node's containerd.
const (
	PauseImage   = "localhost/kratos-injector/pause:bed"
	BusyboxImage = "localhost/kratos-injector/busybox:bed"
	KratosImage  = "localhost/kratos-injector/kratos:v1.3.1"
	// InjectorImage is the project's own image, the one `make image` builds (internal/ociimage),
	// tagged for the bed.
	InjectorImage = "localhost/kratos-injector/kratos-injector:bed"
	// InjectorBinary is where the project's image carries the binary.
	InjectorBinary = ociimage.BinaryPath
	// GateBinary is where it carries the courier gate (inject.GateSource).
	GateBinary = ociimage.GatePath
	// MetricsProxyBinary is the kratos-metrics container's command (inject.MetricsProxyCommand).
	MetricsProxyBinary = ociimage.MetricsProxyPath
	// SmokeWebhookImage is the bed's tiny TLS webhook (hack/tools/images/smokewebhook).
	SmokeWebhookImage = "localhost/kratos-injector/smokewebhook:bed"
)

type imageSpec struct {
	tag  string
	args []string
	// inputs are host files whose content decides whether a cached tarball is still right.
	inputs []string
}

// buildImages returns the tarballs of every bed image, building those whose inputs changed.
func buildImages(webhookBin string) ([]string, error) {
	mkimg, err := Tool("mkimg")
	if err != nil {
		return nil, err
	}
	pause, err := Tool("pause")
	if err != nil {
		return nil, err
	}
	kratos, err := Tool("kratos")
	if err != nil {
		return nil, err
	}
	busybox, err := HostTool("busybox", "/bin/busybox")
	if err != nil {
		return nil, err
	}
	etc, err := etcFiles()
	if err != nil {
		return nil, err
	}
	var specs []imageSpec
	smoke, err := Tool("smokewebhook")
	if err != nil {
		return nil, err
	}
	specs = append(specs, imageSpec{tag: PauseImage, inputs: []string{pause},
		args: []string{"-entrypoint", "/pause", "-f", pause + ":/pause:0755"}})
	specs = append(specs, imageSpec{tag: SmokeWebhookImage, inputs: []string{smoke},
		args: []string{"-entrypoint", "/smokewebhook", "-f", smoke + ":/smokewebhook:0755", "-user", "65532:65532"}})

	applets, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	bb := []string{"-f", busybox + ":/bin/busybox:0755", "-d", "/tmp:1777", "-d", "/root:0700",
		"-f", etc.passwd + ":/etc/passwd:0644", "-f", etc.group + ":/etc/group:0644", "-cmd", "sh"}
	for _, a := range strings.Fields(string(applets)) {
		if a != "busybox" {
			bb = append(bb, "-l", "/bin/"+a+":/bin/busybox")
		}
	}
	specs = append(specs, imageSpec{tag: BusyboxImage, inputs: []string{busybox, etc.passwd}, args: bb})

	// Kratos is built with cgo (SQLite): the image carries the glibc files ldd lists.
	kargs := []string{"-f", kratos + ":/usr/bin/kratos:0755", "-d", "/tmp:1777", "-d", "/var/lib/sqlite:0777",
		"-f", etc.passwd + ":/etc/passwd:0644", "-f", etc.group + ":/etc/group:0644",
		"-entrypoint", "kratos", "-env", "SQA_OPT_OUT=true"}
	ldd, err := exec.Command("ldd", kratos).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd kratos: %w", err)
	}
	kin := []string{kratos}
	for _, lib := range regexp.MustCompile(`/[^ ]+\.so[^ ]*`).FindAllString(string(ldd), -1) {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, err
		}
		kargs = append(kargs, "-f", real+":"+lib+":0755")
		kin = append(kin, real)
	}
	specs = append(specs, imageSpec{tag: KratosImage, inputs: kin, args: kargs})

	dir := filepath.Join(filepath.Dir(ToolsDir()), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	injector, err := injectorImageTarball(dir, webhookBin)
	if err != nil {
		return nil, fmt.Errorf("injector image: %w", err)
	}
	tars := []string{injector}
	for _, s := range specs {
		h := sha256.New()
		fmt.Fprintln(h, s.tag, strings.Join(s.args, " "))
		for _, in := range append(s.inputs, mkimg) {
			f, err := os.Open(in)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		name := strings.NewReplacer("/", "_", ":", "_").Replace(s.tag)
		tar := filepath.Join(dir, name+"-"+hex.EncodeToString(h.Sum(nil))[:12]+".tar")
		if _, err := os.Stat(tar); err != nil {
			out, err := exec.Command(mkimg, append([]string{"-tag", s.tag, "-o", tar + ".tmp"}, s.args...)...).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("mkimg %s: %w\n%s", s.tag, err, out)
			}
			if err := os.Rename(tar+".tmp", tar); err != nil {
				return nil, err
			}
			// Keep only the newest tarball of each image.
			old, _ := filepath.Glob(filepath.Join(dir, name+"-*.tar"))
			sort.Strings(old)
			for _, o := range old {
				if o != tar {
					_ = os.Remove(o)
				}
			}
		}
		tars = append(tars, tar)
	}
	return tars, nil
}

type etcPaths struct{ passwd, group string }

// etcFiles writes the minimal /etc/passwd and /etc/group the images carry (root, nobody, and the
// nonroot user 65532 that distroless images use).
func etcFiles() (etcPaths, error) {
	dir := filepath.Join(filepath.Dir(ToolsDir()), "images", "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return etcPaths{}, err
	}
	p := etcPaths{passwd: filepath.Join(dir, "passwd"), group: filepath.Join(dir, "group")}
	if err := os.WriteFile(p.passwd, []byte("root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644); err != nil {
		return p, err
	}
	return p, os.WriteFile(p.group, []byte("root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n"), 0o644)
}

// ImageLayout is the OCI image layout `make image` writes: $KRATOS_INJECTOR_IMAGE_LAYOUT, else
// _output/image at the repository root.
func ImageLayout() (string, error) {
	if d := os.Getenv("KRATOS_INJECTOR_IMAGE_LAYOUT"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "_output", "image"), nil
}

// injectorImageTarball returns a docker tarball of the injector image for the node to import: the
// host platform's image of the index `make image` wrote (ImageLayout), when its binary is
// webhookBin byte for byte (both are built the same way from the same sources); otherwise, so that
// the bed never runs stale code, the same image built by the same core (ociimage.Image) around
// webhookBin, with a note to run `make image`.
func injectorImageTarball(dir, webhookBin string) (string, error) {
	// make build writes every binary of the image beside webhook.
	bins := map[string][]byte{}
	for _, c := range ociimage.Commands {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(webhookBin), path.Base(c.Path)))
		if err != nil {
			return "", fmt.Errorf("%w (make build writes it)", err)
		}
		bins[c.Path] = b
	}
	var img v1.Image
	if layoutDir, err := ImageLayout(); err == nil {
		if idx, ref, err := ociimage.ReadLayout(layoutDir); err == nil {
			if cand, err := ociimage.PlatformImage(idx, ociimage.HostPlatform()); err == nil {
				if same, err := imageCarries(cand, bins); err == nil && same {
					img = cand
					d, _ := idx.Digest()
					fmt.Fprintf(os.Stderr, "testbed: injector image from %s (%s@%s)\n", layoutDir, ref, d)
				}
			}
		}
		if img == nil {
			fmt.Fprintf(os.Stderr, "testbed: %s is missing or holds another binary than %s: building the same image around it (run `make image` to test the image a release ships)\n", layoutDir, webhookBin)
		}
	}
	if img == nil {
		var err error
		if img, err = ociimage.Image(bins, ociimage.HostPlatform(), time.Unix(0, 0).UTC(), "bed"); err != nil {
			return "", err
		}
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	name := strings.NewReplacer("/", "_", ":", "_").Replace(InjectorImage)
	tar := filepath.Join(dir, name+"-"+cfg.Hex[:12]+".tar")
	if _, err := os.Stat(tar); err == nil {
		return tar, nil
	}
	if err := ociimage.WriteDockerTarball(tar+".tmp", img, InjectorImage); err != nil {
		return "", err
	}
	if err := os.Rename(tar+".tmp", tar); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, name+"-*.tar"))
	for _, o := range old {
		if o != tar {
			_ = os.Remove(o)
		}
	}
	return tar, nil
}

// imageCarries reports whether img carries exactly bins (by path).
func imageCarries(img v1.Image, bins map[string][]byte) (bool, error) {
	layers, err := img.Layers()
	if err != nil {
		return false, err
	}
	matched := 0
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return false, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			want, ok := bins["/"+strings.TrimPrefix(h.Name, "/")]
			if !ok {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				rc.Close()
				return false, err
			}
			if !bytes.Equal(b, want) {
				rc.Close()
				return false, nil
			}
			matched++
		}
		rc.Close()
	}
	return matched == len(bins), nil
}
