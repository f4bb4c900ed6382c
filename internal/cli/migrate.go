package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// MigrateOptions are `migrate`.
type MigrateOptions struct {
	g       *Globals
	Timeout time.Duration
	// Log streams Kratos's own log instead of the progress lines and the summary.
	Log    bool
	DryRun dryRunFlags
	// Status lists the pending migrations instead of migrating.
	Status bool
	Output outputFlags
}

func newMigrateCmd(g *Globals) *cobra.Command {
	o := &MigrateOptions{g: g}
	cmd := &cobra.Command{
		Use:   "migrate [--timeout DURATION] [--log] [--status]",
		Short: "Migrate the instance's database (kratos migrate sql) from inside its Kratos container",
		Long: `Run "kratos migrate sql -e --yes -c <rendered config>" in the kratos container of a running pod
of the instance. Kratos v1.3 does not listen until its database is migrated, so the pod may be
running but not Ready: that is the pod this command is for (with the migrate=manual
annotation, the default with Postgres). Applying it again is harmless.

It prints a line per migration applied ("applied VERSION NAME"), Kratos's warnings and errors,
and a summary ("applied 663 migrations in 2.1s"), read from Kratos's log; --log (-v) shows that
log as Kratos writes it instead.

--status lists the migrations that are pending, and changes nothing. Kratos v1.3.1 has no
"migrate status" ("kratos migrate sql" without --yes computes the plan but prints it empty),
so the plugin reads the versions recorded in the database's schema_migration table, as Kratos
does, and compares them with the migrations of the pods' Kratos release (those of v1.3.1 are
built into the plugin). It reads the database Secret the pods' annotation names (RBAC: get
secrets) and connects to the database: through a port-forward when its host is a Service of
the cluster (get services, list endpointslices, create pods/portforward there), directly
otherwise. SQLite databases live inside each pod and are migrated before Kratos starts.

--dry-run=client prints the command it would run; --dry-run=server also finds the pod it
would run in (read-only).`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up waiting for the migration after this long")
	cmd.Flags().BoolVarP(&o.Log, "log", "v", false, "show Kratos's log as it writes it, instead of a line per migration and a summary")
	cmd.Flags().BoolVar(&o.Status, "status", false, "list the pending migrations (read from the database's schema_migration table) instead of migrating")
	o.DryRun.add(cmd)
	o.Output.add(cmd, false)
	return cmd
}

func (o *MigrateOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *MigrateOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.g.AdminURL != "" {
		return errors.New("--admin-url does not apply to migrate: migrations run inside the pod, through the API server")
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", o.Timeout)
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	if o.Status && (o.DryRun.strategy != dryRunNone || o.Log) {
		return errors.New("--status changes nothing and shows no log: it goes with neither --dry-run nor --log")
	}
	if !o.Status && o.Output.structured() {
		return errors.New("-o json|yaml goes with --status")
	}
	return o.Output.Validate()
}

func (o *MigrateOptions) Run(ctx context.Context) error {
	if o.DryRun.client() {
		cmd := actions.MigrateCommand("<the pod's rendered config>")
		fmt.Fprintf(o.g.Streams.Out, "would run %q in the kratos container of a running pod of the instance %s\n", strings.Join(cmd, " "), o.DryRun.suffix())
		return nil
	}
	k, err := o.g.kube()
	if err != nil {
		return err
	}
	in, err := o.g.findInstance(ctx, k)
	if err != nil {
		return err
	}
	if o.Status {
		return o.runStatus(ctx, k, in)
	}
	pod, err := in.KratosRunningPod()
	if err != nil {
		return err
	}
	cmd := actions.MigrateCommand(instance.ConfigPath(pod))
	if o.DryRun.server() {
		fmt.Fprintf(o.g.Streams.Out, "would run %q in pod %s (container %s) of instance %s %s\n",
			strings.Join(cmd, " "), pod.Name, inject.ContainerKratos, in.Name, o.DryRun.suffix())
		return nil
	}
	fmt.Fprintf(o.g.Streams.ErrOut, "Migrating the database of instance %s in pod %s: %s\n", in.Name, pod.Name, strings.Join(cmd, " "))

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	stdout, stderr := o.g.Streams.Out, o.g.Streams.ErrOut
	var log *migrateLog
	if !o.Log {
		log = newMigrateLog(o.g.Streams.Out, o.g.Streams.ErrOut)
		stdout, stderr = log, log
	}
	err = instance.Exec(ctx, k.config, k.clientset, pod, inject.ContainerKratos, cmd, stdout, stderr)
	if log != nil {
		log.Flush()
		if err != nil {
			log.Explain()
		}
	}
	took := time.Since(start).Round(10 * time.Millisecond)
	var ee *instance.ExitError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("migration failed in pod %s: kratos migrate exited with status %d (what it said is above; --log shows all it wrote)", pod.Name, ee.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("migration did not finish within %s in pod %s: retry with a longer --timeout (applied migrations are skipped)", o.Timeout, pod.Name)
	case brokenStream(err):
		// The stream broke (API server or kubelet gone): kratos may have finished, may still be
		// running in the pod, or may have stopped between migrations. Each migration is its own
		// transaction, so a rerun is safe and completes the rest.
		return fmt.Errorf("migration in pod %s: the connection broke before kratos migrate finished; it may have completed or "+
			"stopped part way: run kubectl kratos migrate again (applied migrations are skipped): %w", pod.Name, err)
	case err != nil:
		return fmt.Errorf("migration in pod %s: %w", pod.Name, err)
	}
	switch {
	case log == nil:
		fmt.Fprintf(o.g.Streams.ErrOut, "Database of instance %s migrated in %s.\n", in.Name, took)
	case !log.Counted():
		fmt.Fprintf(o.g.Streams.ErrOut, "Database of instance %s migrated in %s (Kratos's log level is above info: how many migrations it applied is not known; --log shows what it wrote).\n", in.Name, took)
	case log.Applied() == 0:
		fmt.Fprintf(o.g.Streams.ErrOut, "Database of instance %s migrated: it was up to date, no migration applied (%s).\n", in.Name, took)
	default:
		fmt.Fprintf(o.g.Streams.ErrOut, "Database of instance %s migrated: applied %s in %s.\n", in.Name, fmt.Sprintf("%d migrations", log.Applied()), took)
	}
	return nil
}

// brokenStream says whether an exec ended because its connection broke (the API server or the
// kubelet went away mid-stream), rather than because it was refused or the command failed.
func brokenStream(err error) bool {
	if err == nil {
		return false
	}
	// Over WebSocket (client-go's default for exec), a dropped connection is a close frame
	// that never came: 1006, abnormal closure.
	if ce, ok := errors.AsType[*websocket.CloseError](err); ok && ce.Code == websocket.CloseAbnormalClosure {
		return true
	}
	// client-go's stream readers do not all wrap the error they got (%v, not %w).
	if strings.Contains(err.Error(), "websocket: close 1006 (abnormal closure)") {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
