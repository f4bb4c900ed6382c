package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// ImportOptions are `identity import`.
type ImportOptions struct {
	g          *Globals
	Filename   string
	Batch      int
	OnConflict string
	FailFast   bool
	DryRun     dryRunFlags
	Output     outputFlags
}

func newImportCmd(g *Globals) *cobra.Command {
	o := &ImportOptions{g: g}
	cmd := &cobra.Command{
		Use:   "import -f FILE|- [--batch N] [--on-conflict skip|fail] [--fail-fast]",
		Short: "Create identities from JSON lines (identity export's output), keeping their password hashes",
		Long: `Create the identities of a file of JSON lines, as "identity export" writes them (or as Kratos's
admin API shows identities), through Kratos's batch endpoint, --batch at a time. Password hashes
are imported as they are (bcrypt, argon2, pbkdf2, scrypt... whatever Kratos reads), so users
sign in with their old passwords; OIDC accounts stay linked (by provider and subject); verified
addresses stay verified. New identities get new IDs.

The file is streamed: one batch is in memory at a time. An identity that cannot be created is
reported with its line number and Kratos's reason, and the others go on (--fail-fast stops at
the first). An identity whose identifier (email, username) is taken on the target is skipped
(--on-conflict skip, the default), so importing the same file again creates nothing twice; with
--on-conflict fail it counts as a failure. The exit status is 1 when an identity failed.
A progress bar is shown when standard error is a terminal.

--dry-run=client reads and checks the file without contacting anything; --dry-run=server also
checks, read-only, that each identity's schema exists and whether its identifier is taken (one
lookup per identity). Neither creates anything.`,
		Example: `  kubectl kratos identity import -f identities.jsonl
  kubectl kratos identity export -n old | kubectl kratos identity import -n new -f - --batch 1000`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().StringVarP(&o.Filename, "filename", "f", "", "file of identities, one JSON document per line, or - for standard input (required)")
	_ = cmd.MarkFlagFilename("filename", "jsonl", "json", "ndjson")
	cmd.Flags().IntVar(&o.Batch, "batch", 500, fmt.Sprintf("identities per batch call (1 to %d)", actions.BatchLimit))
	cmd.Flags().StringVar(&o.OnConflict, "on-conflict", actions.OnConflictSkip, "an identity whose identifier is taken: skip, or fail")
	_ = cmd.RegisterFlagCompletionFunc("on-conflict", cobra.FixedCompletions([]string{actions.OnConflictSkip, actions.OnConflictFail}, cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().BoolVar(&o.FailFast, "fail-fast", false, "stop at the first identity that cannot be imported")
	o.DryRun.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *ImportOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *ImportOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.Filename == "" {
		return errors.New("-f is required: a file of identities (identity export's output), or - for standard input")
	}
	if o.Batch < 1 || o.Batch > actions.BatchLimit {
		return fmt.Errorf("--batch %d: want 1 to %d (Kratos's limit)", o.Batch, actions.BatchLimit)
	}
	if !slices.Contains([]string{actions.OnConflictSkip, actions.OnConflictFail}, o.OnConflict) {
		return fmt.Errorf("--on-conflict %q: want skip or fail", o.OnConflict)
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	if o.Output.Format == formatWide {
		return errors.New(`-o "wide": want one of table, json, yaml`)
	}
	return o.Output.Validate()
}

// importResult is what -o json|yaml prints.
type importResult struct {
	actions.ImportStats
	Failures []actions.ImportFailure `json:"failures"`
	Seconds  float64                 `json:"seconds"`
}

func (o *ImportOptions) Run(ctx context.Context) error {
	in := o.g.Streams.In
	name := "standard input"
	total := 0
	if o.Filename != "-" {
		f, err := os.Open(o.Filename)
		if err != nil {
			return fmt.Errorf("-f: %w", err)
		}
		defer f.Close()
		in, name = f, o.Filename
	}
	bar := o.progressBar()
	if bar != nil && o.Filename != "-" {
		// The bar's total: the file's lines, counted in a first streaming pass.
		var err error
		if total, err = countLines(o.Filename); err != nil {
			return fmt.Errorf("-f: %w", err)
		}
	}
	var a *admin
	if !o.DryRun.client() {
		var err error
		if a, err = o.g.connectAdmin(ctx); err != nil {
			return err
		}
		defer a.Close()
	}

	start := time.Now()
	res := importResult{Failures: []actions.ImportFailure{}}
	opts := actions.ImportOptions{Batch: o.Batch, OnConflict: o.OnConflict, FailFast: o.FailFast,
		Failure: func(f actions.ImportFailure) {
			if o.Output.structured() {
				res.Failures = append(res.Failures, f)
				return
			}
			bar.clear()
			fmt.Fprintf(o.g.Streams.ErrOut, "error: %s\n", f.Error())
		},
		Progress: func(st actions.ImportStats) { bar.show(st, total, time.Since(start)) },
	}
	var st actions.ImportStats
	var err error
	switch {
	case o.DryRun.client():
		st, err = actions.PlanImport(ctx, nil, in, opts)
	case o.DryRun.server():
		st, err = actions.PlanImport(ctx, a.APIClient, in, opts)
	default:
		st, err = actions.ImportIdentities(ctx, a.APIClient, in, opts)
	}
	bar.clear()
	took := time.Since(start)
	res.ImportStats, res.Seconds = st, took.Seconds()
	if err != nil && !errors.Is(err, actions.ErrImportFailed) {
		if a != nil {
			err = a.Explain(err)
		}
		return fmt.Errorf("import %s: %w (%d created before it stopped)", name, err, st.Created)
	}
	if o.Output.structured() {
		if perr := o.Output.printStructured(o.g.Streams.Out, res); perr != nil {
			return perr
		}
	} else if o.DryRun.any() {
		fmt.Fprintf(o.g.Streams.Out, "Would import %s: %s, %d would be created, %d skipped (identifier taken), %d failed %s.\n",
			name, identities(st.Lines), st.Created, st.Skipped, st.Failed, o.DryRun.suffix())
	} else {
		fmt.Fprintf(o.g.Streams.Out, "Imported %s: %s, %d created, %d skipped (identifier taken), %d failed, in %s%s.\n",
			name, identities(st.Lines), st.Created, st.Skipped, st.Failed, took.Round(10*time.Millisecond), rate(st.Created, took))
		if len(st.Dropped) > 0 {
			var parts []string
			for t, n := range st.Dropped {
				parts = append(parts, fmt.Sprintf("%s (%d)", t, n))
			}
			slices.Sort(parts)
			fmt.Fprintf(o.g.Streams.ErrOut, "Warning: second factors cannot be imported, their owners enrol again: %s\n", strings.Join(parts, ", "))
		}
	}
	if err != nil {
		return fmt.Errorf("import %s: %s not imported (see above)", name, identities(st.Failed))
	}
	return nil
}

// countLines counts the lines of a file, streaming it.
func countLines(name string) (int, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, last := 0, byte('\n')
	buf := make([]byte, 256<<10)
	for {
		k, err := f.Read(buf)
		if k > 0 {
			n += bytes.Count(buf[:k], []byte{'\n'})
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			if last != '\n' {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// progress is a one-line progress bar on a terminal (standard error), redrawn with a carriage
// return; nil (no bar) when standard error is not a terminal. It writes only figures.
type progress struct {
	w     io.Writer
	shown bool
}

func (o *ImportOptions) progressBar() *progress {
	if o.Output.structured() || !isTerminal(o.g.rawErrOut) {
		return nil
	}
	return &progress{w: o.g.rawErrOut}
}

func (p *progress) show(st actions.ImportStats, total int, took time.Duration) {
	if p == nil {
		return
	}
	done := st.Created + st.Skipped + st.Failed
	line := fmt.Sprintf("%d created, %d skipped, %d failed", st.Created, st.Skipped, st.Failed)
	if total > 0 {
		const width = 30
		filled := min(width, done*width/total)
		line = fmt.Sprintf("[%s%s] %3d%% %d/%d: %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done*100/total, done, total, line)
	}
	if took > 0 {
		line += fmt.Sprintf(" (%.0f/s)", float64(done)/took.Seconds())
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.shown = true
}

// clear ends the bar's line, so that the next message starts on a clean line.
func (p *progress) clear() {
	if p == nil || !p.shown {
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	p.shown = false
}
