// Command courier-gate runs Kratos's courier in an injected pod only while this pod holds the
// database's courier lock (see internal/courier). It ships in the injector image; the
// kratos-config init container copies it into the pod, where the kratos-courier container runs
// it in the Kratos image, next to the kratos binary it starts.
//
//	courier-gate run --config /etc/kratos/kratos.yaml -- kratos courier watch -c /etc/kratos/kratos.yaml
//	courier-gate holder --config /etc/kratos/kratos.yaml
//	courier-gate exclusive --config /etc/kratos/kratos.yaml -- kratos migrate sql -e --yes -c /etc/kratos/kratos.yaml
//
// exclusive serialises the kratos-migrate init containers of replicas that start together on a
// fresh database (the migration lock), so none fails on the tables another is creating.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/courier"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: courier-gate run|holder|exclusive --config KRATOS_YAML [-- COMMAND]")
	}
	fs := flag.NewFlagSet("courier-gate "+args[0], flag.ContinueOnError)
	cfg := fs.String("config", "", "the rendered kratos.yaml (its dsn names the database)")
	retry := fs.Duration("retry", 2*time.Second, "how often a standby gate tries to take the lock")
	grace := fs.Duration("grace", 10*time.Second, "how long the courier has to stop on SIGTERM")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cfg == "" {
		return fmt.Errorf("--config is required")
	}
	dsn, err := courier.ReadDSN(*cfg)
	if err != nil {
		return fmt.Errorf("read the database: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch args[0] {
	case "run":
		if fs.NArg() == 0 {
			return fmt.Errorf("run: the courier command follows --")
		}
		if *retry <= 0 {
			return fmt.Errorf("--retry must be positive")
		}
		g := &courier.Gate{DSN: dsn, Command: fs.Args(), Pod: os.Getenv("POD_NAME"), Retry: *retry, Grace: *grace,
			Log: os.Stderr, Stdout: os.Stdout, Stderr: os.Stderr}
		return g.Run(ctx)
	case "holder":
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		pod, err := courier.Holder(ctx, dsn)
		if err != nil {
			return fmt.Errorf("holder: %w", err)
		}
		fmt.Println(pod)
		return nil
	case "exclusive":
		if fs.NArg() == 0 {
			return fmt.Errorf("exclusive: the command follows --")
		}
		err := courier.Exclusive(ctx, dsn, os.Getenv("POD_NAME"), fs.Args(), os.Stdout, os.Stderr, os.Stderr)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// The command's own status: its output already says why.
			os.Exit(ee.ExitCode())
		}
		return err
	default:
		return fmt.Errorf("unknown command %q: run, holder or exclusive", args[0])
	}
}
