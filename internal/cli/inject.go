package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/resource"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// InjectOptions are `inject`.
type InjectOptions struct {
	g     *Globals
	files genericclioptions.FileNameFlags
	// Files are kubectl's -f, -R and -k: files, directories (their *.json, *.yaml and *.yml
	// files; with -R, those of subdirectories too), glob patterns, URLs and "-" (stdin); or a
	// kustomization directory.
	Files         resource.FilenameOptions
	InjectorImage string
	KratosImage   string
}

func newInjectCmd(g *Globals) *cobra.Command {
	o := &InjectOptions{g: g}
	cmd := &cobra.Command{
		Use:   "inject (-f FILENAME | -k DIRECTORY)",
		Short: "Inject Kratos into manifests offline, as the webhook would (Pods, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Lists)",
		Long: `Inject Kratos into the manifests read from -f, without a cluster, and write them to standard output
in the same order: the same injection the admission webhook makes, by the same code. Use it to
review what the webhook will do, to commit injected manifests (GitOps), or where no webhook runs.

The input is read as "kubectl apply" reads it: -f takes files, directories (their .json, .yaml
and .yml files; with -R also those of their subdirectories), glob patterns, http(s) URLs and -
for standard input, and is repeatable (or comma-separated); -k builds a kustomization directory
first, as "kubectl apply -k" does.

Pods, and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets,
ReplicationControllers, Jobs and CronJobs (also inside a List), are injected when they carry the
label kratos-injector.io/inject: "true"; they get the label kratos-injector.io/instance (the
workload's name, unless set) and the status annotation, so the webhook leaves them alone when
they are applied. An injected document is re-encoded (keys sorted; of its comments, only those
at its head are kept). Every other document, and an object injected already, is written back
unchanged, byte for byte, so injecting the output again changes nothing.

A workload whose annotations are invalid fails the command (exit status 1) with the message the
webhook denies its pods with, naming the object; then nothing is written. Warnings (random
secrets, no SMTP, ...) go to standard error.`,
		Example: `  # Review the injection of a Deployment
  kubectl kratos inject -f deployment.yaml

  # Inject a kustomize build and apply it
  kubectl kratos inject -k overlays/prod | kubectl apply -f -

  # Every manifest under a tree, and one from a URL
  kubectl kratos inject -R -f deploy/ -f https://example.com/app.yaml

  # With the images the cluster's webhook uses
  kubectl kratos inject -f app/ --injector-image registry.example.com/kratos-injector:v0.3.0 --kratos-image oryd/kratos:v1.3.1`,
		Args: noArgs,
		RunE: runE(o),
	}
	files := genericclioptions.FileNameFlags{
		Usage:     "manifest file, directory of manifests (*.json, *.yaml, *.yml), glob pattern, http(s) URL, or - for standard input; repeatable",
		Filenames: &[]string{}, Recursive: new(bool), Kustomize: new(string),
	}
	files.AddFlags(cmd.Flags())
	o.files = files
	cmd.Flags().StringVar(&o.InjectorImage, "injector-image", inject.DefaultInjectorImage, "image of the kratos-config init container (the webhook's --injector-image)")
	cmd.Flags().StringVar(&o.KratosImage, "kratos-image", inject.DefaultKratosImage, "Kratos image of pods without the kratos-injector.io/image annotation (the webhook's --kratos-image)")
	_ = cmd.MarkFlagDirname("kustomize")
	return cmd
}

// Complete takes the file flags; the injection depends neither on the namespace (-n) nor on a
// cluster.
func (o *InjectOptions) Complete(*cobra.Command, []string) error {
	o.Files = o.files.ToOptions()
	return nil
}

func (o *InjectOptions) Validate() error {
	if len(o.Files.Filenames) == 0 && o.Files.Kustomize == "" {
		return errors.New("-f or -k is required: a manifest file, a directory, a URL, - for standard input, or a kustomization directory")
	}
	if len(o.Files.Filenames) > 0 && o.Files.Kustomize != "" {
		return errors.New("only one of -f or -k can be specified")
	}
	if o.Files.Kustomize != "" && o.Files.Recursive {
		return errors.New("the -k flag can't be used with -f or -R")
	}
	stdin := 0
	for _, f := range o.Files.Filenames {
		switch f {
		case "":
			return errors.New("-f: empty file name")
		case "-":
			stdin++
		}
	}
	if stdin > 1 {
		return errors.New("-f -: standard input can be read only once")
	}
	if err := inject.ValidImage(o.InjectorImage); err != nil {
		return fmt.Errorf("--injector-image: %w", err)
	}
	if err := inject.ValidImage(o.KratosImage); err != nil {
		return fmt.Errorf("--kratos-image: %w", err)
	}
	return nil
}

// Run reads every -f and prints what internal/inject makes of them: the warnings first, then
// the output, which is written only when every object could be injected.
func (o *InjectOptions) Run(ctx context.Context) error {
	var manifests []inject.Manifest
	if o.Files.Kustomize != "" {
		m, err := kustomizeBuild(o.Files.Kustomize)
		if err != nil {
			return err
		}
		manifests = append(manifests, m)
	}
	for _, f := range o.Files.Filenames {
		m, err := o.read(ctx, f)
		if err != nil {
			return err
		}
		manifests = append(manifests, m...)
	}
	// Buffered: the warnings are printed before any of the output, which may be long.
	var out bytes.Buffer
	report, err := inject.InjectManifests(&out, inject.Options{InjectorImage: o.InjectorImage, KratosImage: o.KratosImage}, manifests...)
	if err != nil {
		return err
	}
	for _, w := range report.Warnings {
		fmt.Fprintf(o.g.Streams.ErrOut, "Warning: %s\n", w)
	}
	_, err = o.g.Streams.Out.Write(out.Bytes())
	return err
}

// read returns the content of -f f as kubectl's resource builder finds it (FilenameParam):
// stdin, a URL, or paths (a glob pattern when no such file exists), each a file or a directory
// walked by cli-runtime's own ExpandPathsToFileVisitors (with -R, recursively). Each file keeps
// its bytes, so that what is not injected is written back byte for byte.
func (o *InjectOptions) read(ctx context.Context, f string) ([]inject.Manifest, error) {
	switch {
	case f == "-":
		b, err := io.ReadAll(o.g.Streams.In)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return []inject.Manifest{{Name: "stdin", Data: b}}, nil
	case strings.HasPrefix(f, "http://") || strings.HasPrefix(f, "https://"):
		b, err := readURL(ctx, f)
		if err != nil {
			return nil, err
		}
		return []inject.Manifest{{Name: f, Data: b}}, nil
	}
	paths := []string{f}
	if _, err := os.Stat(f); os.IsNotExist(err) {
		matches, gerr := filepath.Glob(f)
		switch {
		case gerr != nil:
			return nil, fmt.Errorf("-f %s: pattern is not valid: %w", f, gerr)
		case len(matches) == 0:
			return nil, fmt.Errorf("-f %s: %w", f, err)
		}
		paths = matches
	}
	var out []inject.Manifest
	for _, p := range paths {
		visitors, err := resource.ExpandPathsToFileVisitors(nil, p, o.Files.Recursive, resource.FileExtensions, nil)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", p, err)
		}
		if len(visitors) == 0 {
			return nil, fmt.Errorf("-f %s: the directory holds no *.yaml, *.yml or *.json file (recognized file extensions are %v; -R reads subdirectories)", p, resource.FileExtensions)
		}
		for _, v := range visitors {
			fv, ok := v.(*resource.FileVisitor)
			if !ok {
				return nil, fmt.Errorf("-f %s: unexpected %T", p, v)
			}
			b, err := os.ReadFile(fv.Path)
			if err != nil {
				return nil, fmt.Errorf("-f %s: %w", p, err)
			}
			out = append(out, inject.Manifest{Name: fv.Path, Data: b})
		}
	}
	return out, nil
}

// maxURLBytes bounds what -f URL reads: manifests, not a download.
const maxURLBytes = 64 << 20

// readURL fetches a manifest as kubectl's resource builder does: GET, only 200 is a success,
// retried (three attempts, a second apart) on a connection error or a 5xx answer.
func readURL(ctx context.Context, u string) ([]byte, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("-f %s: the URL is not valid: %w", u, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			lastErr = fmt.Errorf("-f %s: %w", u, err)
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxURLBytes+1))
		resp.Body.Close()
		switch {
		case resp.StatusCode != http.StatusOK:
			lastErr = fmt.Errorf("-f %s: unable to read URL, server reported %s", u, resp.Status)
			if resp.StatusCode < 500 {
				return nil, lastErr
			}
			continue
		case err != nil:
			lastErr = fmt.Errorf("-f %s: %w", u, err)
			continue
		case len(b) > maxURLBytes:
			return nil, fmt.Errorf("-f %s: larger than %d MiB", u, maxURLBytes>>20)
		}
		return b, nil
	}
	return nil, lastErr
}

// kustomizeBuild is `kubectl apply -k DIR`'s build (cli-runtime's KustomizeVisitor: krusty with
// the legacy resource order), as one manifest.
func kustomizeBuild(dir string) (inject.Manifest, error) {
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	m, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return inject.Manifest{}, fmt.Errorf("-k %s: %w", dir, err)
	}
	b, err := m.AsYaml()
	if err != nil {
		return inject.Manifest{}, fmt.Errorf("-k %s: %w", dir, err)
	}
	return inject.Manifest{Name: "kustomization " + dir, Data: b}, nil
}
