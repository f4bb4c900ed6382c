package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// terminationLog is where Kubernetes reads a container's termination message: writing the error
// there makes `kubectl describe pod` show which Secret and key broke the render.
const terminationLog = "/dev/termination-log"

const renderCmdName = "render"

// newRenderCmd is the kratos-config init container: spec + mounted Secrets -> kratos.yaml.
// The flags only wire config.Render, which tests and any debug command share.
func newRenderCmd() *cobra.Command {
	var (
		specJSON    string
		opts        config.RenderOptions
		installGate string
	)
	cmd := &cobra.Command{
		Use:   renderCmdName,
		Short: "Render kratos.yaml from the spec and the mounted Secrets and ConfigMaps",
		Long: `Render writes kratos.yaml, and the identity schemas and claims mappers it refers to,
into --out. It reads the spec (JSON, as injected into the kratos-config init container) and the
Secrets and ConfigMaps mounted under --inputs as <inputs>/secrets/<name>/<key> and
<inputs>/configmaps/<name>/<key>. On any problem it writes nothing and fails with one line naming
the Secret or ConfigMap and the key; no secret value is ever printed.`,
		Args: cobra.NoArgs,
		// A failure's line reaches the termination log through execute.
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer func() {
				// A panic's message and stack go to the log only: say where to look.
				if r := recover(); r != nil {
					writeTerminationMessage(terminationLog, errors.New("internal error: render panicked; see the kratos-config container's log"))
					panic(r)
				}
			}()
			if err := runRender(cmd, specJSON, opts); err != nil {
				return err
			}
			return installCourierGate(installGate)
		},
	}
	f := cmd.Flags()
	f.StringVar(&specJSON, "spec", "", "the instance spec as JSON (required)")
	f.StringVar(&opts.InputDir, "inputs", config.DefaultInputDir, "directory of the mounted Secrets and ConfigMaps")
	f.StringVar(&opts.ConfigDir, "out", config.DefaultConfigDir, "directory to write into; kratos.yaml refers to its files by this absolute path")
	f.StringVar(&opts.DataDir, "data-dir", config.DefaultDataDir, "directory of the SQLite database")
	f.StringVar(&installGate, "install-courier-gate", "", "SRC:DST: also copy the courier gate binary SRC to DST (for the kratos-courier container)")
	_ = cmd.MarkFlagRequired("spec")
	return cmd
}

func runRender(cmd *cobra.Command, specJSON string, opts config.RenderOptions) error {
	spec, err := config.UnmarshalSpec(specJSON)
	if err != nil {
		return err
	}
	// The file:// URLs in kratos.yaml must be absolute, whatever the working directory.
	if opts.ConfigDir, err = filepath.Abs(opts.ConfigDir); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if opts.DataDir, err = filepath.Abs(opts.DataDir); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	res, err := config.Render(spec, opts)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	if err := res.WriteFiles(opts.ConfigDir); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "rendered %s (%d files)\n", filepath.Join(opts.ConfigDir, config.ConfigFile), len(res.Files))
	return nil
}

// installCourierGate copies the courier gate from the injector image into the volume the
// kratos-courier container (in the Kratos image) runs it from: written aside and renamed, so a
// restarted render never leaves half a binary.
func installCourierGate(srcDst string) error {
	if srcDst == "" {
		return nil
	}
	src, dst, ok := strings.Cut(srcDst, ":")
	if !ok || src == "" || dst == "" {
		return fmt.Errorf("--install-courier-gate=%q: want SRC:DST", srcDst)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install the courier gate: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".courier-gate-")
	if err != nil {
		return fmt.Errorf("install the courier gate: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("install the courier gate: %w", err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return fmt.Errorf("install the courier gate: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install the courier gate: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install the courier gate: %w", err)
	}
	return nil
}

// writeTerminationMessage records err in the termination log path when the container has one
// (outside a pod the file does not exist and nothing is created).
func writeTerminationMessage(path string, err error) {
	f, openErr := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if openErr != nil {
		if !errors.Is(openErr, fs.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "warning: termination log:", openErr)
		}
		return
	}
	defer f.Close()
	fmt.Fprintln(f, err)
}
