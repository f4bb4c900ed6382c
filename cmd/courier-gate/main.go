// Command courier-gate runs Kratos's courier in an injected pod only while this pod holds the
// database's courier lock (see internal/courier). It ships in the injector image; the
// kratos-config init container copies it into the pod, where the kratos-courier container runs
// it in the Kratos image, next to the kratos binary it starts.
//
//	courier-gate run --config /etc/kratos/kratos.yaml -- kratos courier watch -c /etc/kratos/kratos.yaml
//	courier-gate holder --config /etc/kratos/kratos.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
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
		return fmt.Errorf("usage: courier-gate run|holder --config KRATOS_YAML [-- COURIER COMMAND]")
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
	default:
		return fmt.Errorf("unknown command %q: run or holder", args[0])
	}
}
