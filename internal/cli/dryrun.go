package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// dryRun is kubectl's --dry-run strategy.
type dryRun int

const (
	dryRunNone dryRun = iota
	// dryRunClient: say what the command would do from its arguments alone; nothing is
	// contacted (neither the API server nor Kratos), as `kubectl create --dry-run=client`.
	dryRunClient
	// dryRunServer: check everything against the running Kratos with read-only calls (the
	// identity exists, is the only one with that email, has that credential, that link,
	// sessions...) and say exactly what would change; nothing is changed.
	dryRunServer
)

// dryRunFlags is --dry-run, with kubectl's spelling and semantics (cmdutil.AddDryRunFlag,
// GetDryRunStrategy): none (default), client, server; --dry-run alone is client, and the old
// booleans true and false are client and none.
type dryRunFlags struct {
	value    string
	strategy dryRun
}

const dryRunUnchanged = "unchanged"

func (d *dryRunFlags) add(cmd *cobra.Command) {
	d.value = "none"
	cmd.Flags().StringVar(&d.value, "dry-run", d.value, `"none", "client" or "server". client: print what would be done, without contacting the cluster or Kratos; `+
		`server: check it against the running Kratos (read-only) and print exactly what would change. Nothing is changed either way. --dry-run alone is client`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = dryRunUnchanged
	_ = cmd.RegisterFlagCompletionFunc("dry-run", cobra.FixedCompletions([]string{"none", "client", "server"}, cobra.ShellCompDirectiveNoFileComp))
}

func (d *dryRunFlags) Validate() error {
	switch d.value {
	case "none", "":
		d.strategy = dryRunNone
	case "client", dryRunUnchanged:
		d.strategy = dryRunClient
	case "server":
		d.strategy = dryRunServer
	default:
		b, err := strconv.ParseBool(d.value)
		if err != nil {
			return fmt.Errorf(`--dry-run %q: want "none", "server" or "client"`, d.value)
		}
		d.strategy = dryRunNone
		if b {
			d.strategy = dryRunClient
		}
	}
	return nil
}

func (d *dryRunFlags) client() bool { return d.strategy == dryRunClient }
func (d *dryRunFlags) server() bool { return d.strategy == dryRunServer }
func (d *dryRunFlags) any() bool    { return d.strategy != dryRunNone }

func (d *dryRunFlags) suffix() string {
	if d.server() {
		return "(server dry run)"
	}
	return "(dry run)"
}

// dryRunResult is what -o json|yaml prints for a dry run.
type dryRunResult struct {
	DryRun string `json:"dryRun"`
	actions.Plan
	// Identity is the identity as given (ID or email) when the dry run did not look it up.
	Identity string `json:"identity,omitempty"`
}

// printPlan writes what the command would do: "identity/ID: CHANGE (server dry run)".
func (d *dryRunFlags) printPlan(w io.Writer, out *outputFlags, p *actions.Plan, given string) error {
	if out.structured() {
		mode := "client"
		if d.server() {
			mode = "server"
		}
		res := dryRunResult{DryRun: mode, Plan: *p}
		if p.IdentityID == "" {
			res.Identity = given
		}
		return out.printStructured(w, res)
	}
	who := given
	if p.IdentityID != "" {
		who = identityName(p.IdentityID)
	}
	if who == "" {
		_, err := fmt.Fprintf(w, "would %s %s\n", p.Change, d.suffix())
		return err
	}
	if p.NoOp {
		_, err := fmt.Fprintf(w, "%s: %s %s\n", who, p.Change, d.suffix())
		return err
	}
	_, err := fmt.Fprintf(w, "%s: would %s %s\n", who, p.Change, d.suffix())
	return err
}

// givenName names the identity as the command line gave it, for a client dry run.
func givenName(r actions.Ref) string {
	if r.ID != "" {
		return identityName(r.ID)
	}
	return fmt.Sprintf("identity with email %q", r.Email)
}

// confirmFlags are --yes, which destructive commands acting on more than one identity require
// unless the operator answers a y/N prompt on a terminal.
type confirmFlags struct{ Yes bool }

func (c *confirmFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&c.Yes, "yes", "y", false, "do not ask for confirmation when acting on more than one identity (required when standard input is not a terminal)")
}

// isTerminal is whether s (standard input or error) is a terminal; a variable so that tests
// can answer the prompt.
var isTerminal = func(s any) bool {
	f, ok := s.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// confirm asks "QUESTION [y/N]" on a terminal; elsewhere it refuses unless --yes.
func (c *confirmFlags) confirm(g *Globals, question string) error {
	if c.Yes {
		return nil
	}
	if g.Streams.In == nil || !isTerminal(g.Streams.In) {
		return usagef("%s: refused without --yes (standard input is not a terminal to ask on)", question)
	}
	fmt.Fprintf(g.Streams.ErrOut, "%s [y/N] ", question)
	line, err := bufio.NewReader(g.Streams.In).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("%s: no answer: %w", question, err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%s: not confirmed, nothing done", question)
}
