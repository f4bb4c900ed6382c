package testbed

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// Kratos is a real Ory Kratos process.
type Kratos struct {
	PublicURL string
	AdminURL  string
	Proc      *Proc
}

// KratosOptions says how to run Kratos.
type KratosOptions struct {
	// Name distinguishes several Kratos processes in one bed (log file names).
	Name string
	// ConfigFile is the kratos.yaml to run.
	ConfigFile string
	// Env is added to the environment (e.g. DSN overrides). Serve hosts and ports are always
	// overridden to 127.0.0.1 and free ports.
	Env []string
	// Migrate runs `kratos migrate sql -e --yes -c ConfigFile` first.
	Migrate bool
	// Dev passes --dev (allows a low bcrypt cost and plain http URLs).
	Dev bool
	// WatchCourier passes --watch-courier so mail is sent.
	WatchCourier bool
}

// StartKratos migrates (optionally) and serves Kratos, and waits for /health/ready.
func (b *Bed) StartKratos(ctx context.Context, opts KratosOptions) (*Kratos, error) {
	bin, err := Tool("kratos")
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "kratos"
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	k := &Kratos{PublicURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
	env := append([]string{
		"SQA_OPT_OUT=true",
		"SERVE_PUBLIC_HOST=127.0.0.1", "SERVE_ADMIN_HOST=127.0.0.1",
		"SERVE_PUBLIC_PORT=" + strconv.Itoa(ports[0]), "SERVE_ADMIN_PORT=" + strconv.Itoa(ports[1]),
	}, opts.Env...)
	if opts.Migrate {
		if err := b.KratosMigrate(ctx, name, opts.ConfigFile, env); err != nil {
			return nil, err
		}
	}
	args := []string{"serve", "-c", opts.ConfigFile, "--sqa-opt-out"}
	if opts.Dev {
		args = append(args, "--dev")
	}
	if opts.WatchCourier {
		args = append(args, "--watch-courier")
	}
	k.Proc, err = b.Start(name, env, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := k.Proc.WaitReady(60*time.Second, httpOK(k.PublicURL+"/health/ready", "", nil)); err != nil {
		return nil, err
	}
	return k, nil
}

// KratosMigrate runs `kratos migrate sql -e --yes -c config` and reports its output on failure.
func (b *Bed) KratosMigrate(ctx context.Context, name, config string, env []string) error {
	bin, err := Tool("kratos")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "migrate", "sql", "-e", "--yes", "-c", config)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: kratos migrate sql: %w\n%s", name, err, tailString(string(out), 30))
	}
	return nil
}
