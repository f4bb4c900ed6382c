// Package cli is `kubectl kratos`: the cobra command tree of the kubectl plugin, one small file
// per verb, each with the Options pattern (Complete, Validate, Run). cmd/kubectl-kratos only
// calls Main; tests build the tree in-process with NewRootCmd.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Exit statuses of the plugin.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError is a bad invocation: unknown flag, wrong arguments, invalid values. It exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageError(err error) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	return &UsageError{Err: err}
}

func usagef(format string, a ...interface{}) error {
	return &UsageError{Err: fmt.Errorf(format, a...)}
}

// ExitCode maps an error returned by the command tree to the process's exit status.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	}
	return ExitFailure
}

// ErrInterrupted is the error of a command whose context was cancelled: Ctrl-C or SIGTERM, which
// cmd/kubectl-kratos turns into a cancellation (signal.NotifyContext). Whatever the command was
// doing stops (requests, the port-forward) and it exits with ExitFailure, as kubectl does for a
// failed command, printing "error: interrupted".
var ErrInterrupted = errors.New("interrupted")

// Main runs the plugin with args (without the program name) and returns the exit status. Errors
// are printed on streams.ErrOut, kubectl style. Everything written to streams.Out and
// streams.ErrOut is escaped for the terminal (see escape.go): identities, Kratos's messages and
// pods' status are text from others. Cancelling ctx interrupts the command (ErrInterrupted).
func Main(ctx context.Context, args []string, streams genericiooptions.IOStreams) int {
	out, errOut := newTerminalWriter(streams.Out), newTerminalWriter(streams.ErrOut)
	raw := streams.ErrOut
	streams.Out, streams.ErrOut = out, errOut
	root := newRootCmd(streams, raw)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	_ = out.Flush()
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// Whatever failed, it failed because it was cut short: how (a request's "context
		// canceled", a port-forward's EOF) is noise.
		err = ErrInterrupted
	}
	if err != nil {
		fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
		if ExitCode(err) == ExitUsage && cmd != nil {
			fmt.Fprintf(streams.ErrOut, "See '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	_ = errOut.Flush()
	return ExitCode(err)
}

// Globals are the flags every command shares: cli-runtime's kubeconfig flags and the instance
// selection.
type Globals struct {
	Streams genericiooptions.IOStreams
	// rawErrOut is standard error unescaped, for the plugin's own progress bar (which moves
	// the cursor back with a carriage return); nothing from Kratos or pods is written to it.
	rawErrOut   io.Writer
	ConfigFlags *genericclioptions.ConfigFlags
	// Instance picks the instance by its kratos-injector.io/instance label value.
	Instance string
	// Selector further restricts the injected pods (-l).
	Selector string
	// AdminURL bypasses Kubernetes: the admin API is reached directly.
	AdminURL string
	// AdminTimeout bounds each request to the admin API (answer and body) and the opening of
	// the port-forward to it.
	AdminTimeout time.Duration
}

// DefaultAdminTimeout is --admin-timeout's default.
const DefaultAdminTimeout = 30 * time.Second

// NewRootCmd returns the whole `kubectl kratos` command tree, writing to streams.
func NewRootCmd(streams genericiooptions.IOStreams) *cobra.Command {
	return newRootCmd(streams, streams.ErrOut)
}

func newRootCmd(streams genericiooptions.IOStreams, rawErrOut io.Writer) *cobra.Command {
	g := &Globals{Streams: streams, rawErrOut: rawErrOut, ConfigFlags: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-kratos",
		Short: "Operate the Ory Kratos instances injected by kratos-injector",
		Long: `kubectl kratos administers the Ory Kratos instances that kratos-injector injected into pods:
identity administration (as the Kratos charm's actions) and database migrations. It reaches
the instance through the Kubernetes API server (port-forward to the admin API, exec for
migrations), so Kubernetes RBAC on pods/portforward and pods/exec decides who may use it.

The instance is the one of the namespace (pods labelled kratos-injector.io/instance); with
several, pick one with --instance NAME or -l SELECTOR. Only pods the injector injected are
used (opted in with kratos-injector.io/inject=true, carrying its status annotation, running its
Kratos container): a pod that merely carries the instance label is ignored, and never receives
a password.

Requests to the Kratos admin API, and opening the port-forward to it, give up after
--admin-timeout (30s); requests to the API server follow kubectl's --request-timeout. Text from
Kratos and from pods (identity traits, error messages, termination messages) is printed with
its control characters escaped.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl kratos"},
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          helpOrUnknown,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })

	pf := root.PersistentFlags()
	g.ConfigFlags.AddFlags(pf)
	pf.StringVar(&g.Instance, "instance", "", "the Kratos instance (value of the kratos-injector.io/instance label) when the namespace has several")
	pf.StringVarP(&g.Selector, "selector", "l", "", "label selector restricting the injected pods (e.g. app=web)")
	pf.StringVar(&g.AdminURL, "admin-url", "", "reach the Kratos admin API directly at this URL instead of through a port-forward (e.g. http://127.0.0.1:4434)")
	pf.DurationVar(&g.AdminTimeout, "admin-timeout", DefaultAdminTimeout, "give up on the Kratos admin API after this long: opening the port-forward, and each request "+
		"(its answer included); requests to the Kubernetes API server follow --request-timeout")

	_ = root.RegisterFlagCompletionFunc("instance", g.completeInstances)
	root.AddCommand(
		newIdentityCmd(g),
		newMigrateCmd(g), newRestartCmd(g),
		newInjectCmd(g), newStatusCmd(g),
		newVersionCmd(g),
	)
	return root
}

// options is the Options pattern every verb follows.
type options interface {
	// Complete fills the options from the arguments (no network).
	Complete(cmd *cobra.Command, args []string) error
	// Validate checks them (no network); its errors are usage errors.
	Validate() error
	// Run does the work.
	Run(ctx context.Context) error
}

// runE adapts an options value to cobra.
func runE(o options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(cmd, args); err != nil {
			return usageError(err)
		}
		if err := o.Validate(); err != nil {
			return usageError(err)
		}
		return o.Run(cmd.Context())
	}
}

// helpOrUnknown is the RunE of command groups: it shows the help. Having a RunE makes cobra
// check the group's Args (noArgs), so that a mistyped subcommand is a usage error (exit 2)
// instead of cobra's help-and-exit-0.
func helpOrUnknown(cmd *cobra.Command, args []string) error {
	return cmd.Help()
}

// noArgs refuses arguments, naming an unknown subcommand as such.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usagef("%s", msg)
	}
	return usagef("%q accepts no arguments, got %q", cmd.CommandPath(), args)
}

// identityArg accepts at most one positional argument: the identity ID.
func identityArg(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		return usagef("%q takes one identity ID, got %d arguments: %q", cmd.CommandPath(), len(args), args)
	}
	return nil
}
