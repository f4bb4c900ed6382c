package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// InjectOptions are `inject`.
type InjectOptions struct {
	g *Globals
	// Filenames are files, directories (their *.yaml, *.yml and *.json files) or "-" (stdin).
	Filenames     []string
	InjectorImage string
	KratosImage   string
}

func newInjectCmd(g *Globals) *cobra.Command {
	o := &InjectOptions{g: g}
	cmd := &cobra.Command{
		Use:   "inject -f FILE|DIR|-",
		Short: "Inject Kratos into manifests offline, as the webhook would (Pods, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Lists)",
		Long: `Inject Kratos into the manifests read from -f, without a cluster, and write them to standard output
in the same order: the same injection the admission webhook makes, by the same code. Use it to
review what the webhook will do, to commit injected manifests (GitOps), or where no webhook runs.

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
  kustomize build overlays/prod | kubectl kratos inject -f - | kubectl apply -f -

  # With the images the cluster's webhook uses
  kubectl kratos inject -f app/ --injector-image registry.example.com/kratos-injector:v0.3.0 --kratos-image oryd/kratos:v1.3.1`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().StringArrayVarP(&o.Filenames, "filename", "f", nil, "manifest file, directory of manifests (*.yaml, *.yml, *.json), or - for standard input; repeatable")
	cmd.Flags().StringVar(&o.InjectorImage, "injector-image", inject.DefaultInjectorImage, "image of the kratos-config init container (the webhook's --injector-image)")
	cmd.Flags().StringVar(&o.KratosImage, "kratos-image", inject.DefaultKratosImage, "Kratos image of pods without the kratos-injector.io/image annotation (the webhook's --kratos-image)")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

// Complete has nothing to do: the injection depends neither on the namespace (-n) nor on a
// cluster.
func (o *InjectOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *InjectOptions) Validate() error {
	if len(o.Filenames) == 0 {
		return errors.New("-f is required: a manifest file, a directory, or - for standard input")
	}
	stdin := 0
	for _, f := range o.Filenames {
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
func (o *InjectOptions) Run(context.Context) error {
	var manifests []inject.Manifest
	for _, f := range o.Filenames {
		m, err := o.read(f)
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

// read returns the content of -f f: a file, every manifest file of a directory, or stdin.
func (o *InjectOptions) read(f string) ([]inject.Manifest, error) {
	if f == "-" {
		b, err := io.ReadAll(o.g.Streams.In)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return []inject.Manifest{{Name: "stdin", Data: b}}, nil
	}
	fi, err := os.Stat(f)
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", f, err)
	}
	files := []string{f}
	if fi.IsDir() {
		entries, err := os.ReadDir(f)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", f, err)
		}
		files = files[:0]
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if !e.IsDir() && slices.Contains([]string{".yaml", ".yml", ".json"}, ext) {
				files = append(files, filepath.Join(f, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("-f %s: the directory holds no *.yaml, *.yml or *.json file", f)
		}
	}
	out := make([]inject.Manifest, 0, len(files))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", f, err)
		}
		out = append(out, inject.Manifest{Name: name, Data: b})
	}
	return out, nil
}
