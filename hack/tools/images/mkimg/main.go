// mkimg: build a single-layer linux/amd64 image from host files and write a
// docker-save style tarball (importable with `ctr -n k8s.io images import`).
//
//	mkimg -tag localhost/lab/x:1 -o x.tar -entrypoint /bin/x -env A=B \
//	      -f /host/path:/image/path[:mode] -l /image/link:target -d /tmp:1777
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var files, links, dirs, envs, entry, cmd multi
	tag := flag.String("tag", "", "image reference")
	out := flag.String("o", "", "output tarball")
	workdir := flag.String("workdir", "/", "working dir")
	user := flag.String("user", "", "user")
	flag.Var(&files, "f", "host:image[:mode] file")
	flag.Var(&links, "l", "image-path:target symlink")
	flag.Var(&dirs, "d", "image-dir[:mode]")
	flag.Var(&envs, "env", "KEY=VALUE")
	flag.Var(&entry, "entrypoint", "entrypoint element (repeat)")
	flag.Var(&cmd, "cmd", "cmd element (repeat)")
	flag.Parse()
	if *tag == "" || *out == "" {
		log.Fatal("need -tag and -o")
	}
	epoch := time.Unix(0, 0)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var mkparents func(p string)
	mkparents = func(p string) {
		d := path.Dir(p)
		if d == "/" || d == "." || seen[d] {
			return
		}
		mkparents(d)
		seen[d] = true
		must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0755, ModTime: epoch}))
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		p, mode := splitMode(d, 0755)
		mkparents(p)
		if !seen[p] {
			seen[p] = true
			must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, ModTime: epoch}))
		}
	}
	for _, f := range files {
		parts := strings.SplitN(f, ":", 3)
		if len(parts) < 2 {
			log.Fatalf("bad -f %q", f)
		}
		data, err := os.ReadFile(parts[0])
		must(err)
		st, err := os.Stat(parts[0])
		must(err)
		mode := int64(st.Mode().Perm())
		if len(parts) == 3 {
			m, err := strconv.ParseInt(parts[2], 8, 64)
			must(err)
			mode = m
		}
		mkparents(parts[1])
		must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(parts[1], "/"), Mode: mode, Size: int64(len(data)), ModTime: epoch}))
		_, err = tw.Write(data)
		must(err)
	}
	for _, l := range links {
		parts := strings.SplitN(l, ":", 2)
		mkparents(parts[0])
		must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(parts[0], "/"), Linkname: parts[1], Mode: 0777, ModTime: epoch}))
	}
	must(tw.Close())
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }, tarball.WithCompressionLevel(gzip.BestSpeed))
	must(err)
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "kratos-injector mkimg", Created: v1.Time{Time: epoch}}})
	must(err)
	cf, err := img.ConfigFile()
	must(err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = entry
	cf.Config.Cmd = cmd
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, envs...)
	cf.Config.WorkingDir = *workdir
	cf.Config.User = *user
	img, err = mutate.ConfigFile(img, cf)
	must(err)
	ref, err := name.ParseReference(*tag)
	must(err)
	must(tarball.WriteToFile(*out, ref, img))
	d, _ := img.Digest()
	fmt.Printf("%s %s %d bytes layer\n", *tag, d, len(raw))
}

func splitMode(s string, def int64) (string, int64) {
	if i := strings.LastIndex(s, ":"); i > 0 {
		m, err := strconv.ParseInt(s[i+1:], 8, 64)
		must(err)
		return s[:i], m
	}
	return s, def
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
