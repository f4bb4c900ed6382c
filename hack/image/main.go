// Command image builds the kratos-injector image (`make image`): the multi-arch OCI image index of
// internal/ociimage (linux/amd64 and linux/arm64, static webhook binary, user 65532, no shell),
// written as an OCI image layout. Go only: no docker, no registry.
//
//	go run ./hack/image -version v0.1.0 -o _output/image [-platforms linux/amd64,linux/arm64]
//
// Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: HEAD's commit time). Publish with
// `crane push _output/image ghcr.io/kratos-injector/kratos-injector:v0.1.0`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kratos-injector/kratos-injector/internal/ociimage"
)

func main() {
	version := flag.String("version", "dev", "version stamped into the binary and used as the tag")
	out := flag.String("o", "_output/image", "OCI image layout directory to (re)write")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	repo := flag.String("repository", ociimage.Repository, "repository of the ref name recorded in the layout")
	flag.Parse()
	if err := run(*version, *out, *platforms, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(version, out, platforms, repo string) error {
	var ps []v1.Platform
	for _, s := range strings.Split(platforms, ",") {
		osName, arch, ok := strings.Cut(strings.TrimSpace(s), "/")
		if !ok {
			return fmt.Errorf("-platforms: %q is not os/arch", s)
		}
		ps = append(ps, v1.Platform{OS: osName, Architecture: arch})
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	created, err := ociimage.SourceDateEpoch(root)
	if err != nil {
		return err
	}
	idx, err := ociimage.Build(context.Background(), ociimage.Options{Root: root, Version: version, Created: created, Platforms: ps, Log: os.Stderr})
	if err != nil {
		return err
	}
	ref := repo + ":" + version
	if err := ociimage.WriteLayout(out, idx, ref); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n%s: OCI image layout (created %s)\n", ref, d, out, created.Format("2006-01-02T15:04:05Z"))
	return nil
}
