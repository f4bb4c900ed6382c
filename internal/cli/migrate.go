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
}

func newMigrateCmd(g *Globals) *cobra.Command {
	o := &MigrateOptions{g: g}
	cmd := &cobra.Command{
		Use:   "migrate [--timeout DURATION]",
		Short: "Migrate the instance's database (kratos migrate sql) from inside its Kratos container",
		Long: `Run "kratos migrate sql -e --yes -c <rendered config>" in the kratos container of a running pod
of the instance, streaming its output. Kratos v1.3 does not listen until its database is
migrated, so the pod may be running but not Ready: that is the pod this command is for (with
the migrate=manual annotation, the default with Postgres). Applying it again is harmless.`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up waiting for the migration after this long")
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
	return nil
}

func (o *MigrateOptions) Run(ctx context.Context) error {
	k, err := o.g.kube()
	if err != nil {
		return err
	}
	in, err := o.g.findInstance(ctx, k)
	if err != nil {
		return err
	}
	pod, err := in.KratosRunningPod()
	if err != nil {
		return err
	}
	cmd := actions.MigrateCommand(instance.ConfigPath(pod))
	fmt.Fprintf(o.g.Streams.ErrOut, "Migrating the database of instance %s in pod %s: %s\n", in.Name, pod.Name, strings.Join(cmd, " "))

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	err = instance.Exec(ctx, k.config, k.clientset, pod, inject.ContainerKratos, cmd, o.g.Streams.Out, o.g.Streams.ErrOut)
	var ee *instance.ExitError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("migration failed in pod %s: kratos migrate exited with status %d (its output is above)", pod.Name, ee.Code)
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
	fmt.Fprintf(o.g.Streams.ErrOut, "Database of instance %s migrated in %s.\n", in.Name, time.Since(start).Round(10*time.Millisecond))
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
