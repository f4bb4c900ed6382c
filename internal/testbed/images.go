package testbed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Images the bed builds without a registry (go-containerregistry, hack/tools/images/mkimg) and
// imports into the real node's containerd.
const (
	PauseImage   = "localhost/kratos-injector/pause:bed"
	BusyboxImage = "localhost/kratos-injector/busybox:bed"
	KratosImage  = "localhost/kratos-injector/kratos:v1.3.1"
	// InjectorImage is the project's own image: the static webhook binary, as in the Dockerfile.
	InjectorImage = "localhost/kratos-injector/kratos-injector:bed"
	// InjectorBinary is where the project's image carries the binary (same as the Dockerfile).
	InjectorBinary = "/usr/local/bin/webhook"
	// GateBinary is where it carries the courier gate (inject.GateSource).
	GateBinary = "/usr/local/bin/courier-gate"
	// MetricsProxyBinary is the kratos-metrics container's command (inject.MetricsProxyCommand).
	MetricsProxyBinary = "/usr/local/bin/metrics-proxy"
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

	// The courier gate is built beside webhook (make build).
	gateBin := filepath.Join(filepath.Dir(webhookBin), "courier-gate")
	proxyBin := filepath.Join(filepath.Dir(webhookBin), "metrics-proxy")
	specs = append(specs, imageSpec{tag: InjectorImage, inputs: []string{webhookBin, gateBin, proxyBin},
		args: []string{"-f", webhookBin + ":" + InjectorBinary + ":0755", "-f", gateBin + ":" + GateBinary + ":0755",
			"-f", proxyBin + ":" + MetricsProxyBinary + ":0755", "-f", etc.passwd + ":/etc/passwd:0644",
			"-f", etc.group + ":/etc/group:0644", "-entrypoint", InjectorBinary, "-user", "65532:65532"}})

	dir := filepath.Join(filepath.Dir(ToolsDir()), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var tars []string
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
