// Package courier makes sure that one Kratos courier, and only one, dispatches mail per
// database, however many replicas of an injected Kratos share it.
//
// Kratos v1.3.1's courier takes queued mails with a plain SELECT and marks them processing
// afterwards, without a row lock: two couriers on one database send the same mail twice. So
// with Postgres, `kratos serve` runs without --watch-courier, and each pod's kratos-courier
// container runs the Gate, which runs `kratos courier watch` only while it holds a session-level
// Postgres advisory lock. Postgres releases the lock when the session ends, however it ends
// (pod deleted, node lost, connection cut), and the gate stops its courier as soon as it
// cannot show that its session is alive. No Kubernetes API rights are needed: the database
// that the couriers share is the arbiter.
package courier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// The advisory lock's two keys ("KRAT", "COUR"). Advisory locks live in one database, so one
// constant pair gives one courier per database. pg_locks shows them as classid and objid with
// objsubid 2 (the two-key form).
const (
	LockClassID int32 = 0x4b524154
	LockObjID   int32 = 0x434f5552
)

// quickExit: a courier that exits sooner than this is backed off before it is run again.
const quickExit = 30 * time.Second

// ApplicationPrefix starts the application_name of a gate's lock session; the pod's name
// follows, so that Holder can say which pod dispatches.
const ApplicationPrefix = "kratos-courier:"

// Gate runs Command while it holds the lock.
type Gate struct {
	// DSN is the database's connection string as Kratos's driver uses it (config.DriverDSN).
	DSN string
	// Command is the courier, e.g. kratos courier watch -c /etc/kratos/kratos.yaml.
	Command []string
	// Pod names this gate in pg_stat_activity.
	Pod string
	// Retry is how often a gate without the lock tries to take it; the holder checks its
	// session twice as often, so it stops before another gate can take over a lost lock.
	Retry time.Duration
	// Grace is how long the courier has to stop after SIGTERM before it is killed.
	Grace time.Duration
	// Log gets one line per state change. pgx's errors name the host, user and database,
	// never the password.
	Log io.Writer
	// Stdout and Stderr of the courier.
	Stdout, Stderr io.Writer
}

func (g *Gate) logf(format string, args ...any) {
	fmt.Fprintf(g.Log, "%s courier gate: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// Run holds or waits for the lock, running the courier while it is held, until ctx ends.
func (g *Gate) Run(ctx context.Context) error {
	if len(g.Command) == 0 {
		return errors.New("courier gate: no courier command")
	}
	standby := false
	wait := g.Retry
	for ctx.Err() == nil {
		pause := g.Retry
		conn, err := g.connect(ctx)
		if err != nil {
			g.logf("cannot reach the database (%v); retrying in %s", err, g.Retry)
			sleep(ctx, g.Retry)
			continue
		}
		held, err := tryLock(ctx, conn)
		switch {
		case err != nil:
			g.logf("cannot take the courier lock (%v); retrying in %s", err, g.Retry)
		case !held:
			if !standby {
				g.logf("another pod dispatches mail; standing by")
				standby = true
			}
		default:
			standby = false
			// A previous holder whose session Postgres ended notices within Retry (it pings
			// every Retry/2, each ping bounded by Retry/2) and stops its courier: wait that
			// long before starting ours, so two never overlap.
			sleep(ctx, g.Retry)
			if err := ping(ctx, conn, g.Retry/2); err != nil {
				g.logf("lost the lock's session before starting (%v)", err)
				break
			}
			g.logf("holding the courier lock: starting %s", g.Command[0])
			if ran, exited := g.dispatch(ctx, conn); exited && ran < quickExit {
				// A courier that cannot run (a database not migrated yet, say) would be
				// restarted every Retry: back off, up to a minute, as the kubelet would.
				pause, wait = wait, min(2*wait, time.Minute)
				g.logf("the courier exited after %s; next try in %s", ran.Round(time.Millisecond), pause)
			} else {
				wait = g.Retry
			}
		}
		closeConn(conn)
		sleep(ctx, pause)
	}
	return nil
}

// dispatch runs the courier while conn (which holds the lock) stays alive, and stops it when
// ctx ends, the session is lost or the courier exits.
// It returns how long the courier ran and whether it exited by itself.
func (g *Gate) dispatch(ctx context.Context, conn *pgx.Conn) (time.Duration, bool) {
	cmd := exec.Command(g.Command[0], g.Command[1:]...) //nolint:gosec // the command is the injected container's own args
	cmd.Stdout, cmd.Stderr = g.Stdout, g.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		g.logf("cannot start the courier: %v", err)
		return 0, true
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(g.Retry / 2)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			g.logf("the courier exited (%v); releasing the lock", err)
			return time.Since(start), true
		case <-ctx.Done():
			g.logf("stopping: stopping the courier, then releasing the lock")
			g.stop(cmd, exited)
			return time.Since(start), false
		case <-tick.C:
			if err := ping(ctx, conn, g.Retry/2); err != nil && ctx.Err() == nil {
				// The session, and with it the lock, may be gone: another gate may take it
				// over on its next try, so the courier must stop now.
				g.logf("lost the lock's session (%v): stopping the courier", err)
				g.stop(cmd, exited)
				return time.Since(start), false
			}
		}
	}
}

// stop sends SIGTERM, and SIGKILL after the grace period.
func (g *Gate) stop(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		g.logf("the courier stopped (%v)", err)
	case <-time.After(g.Grace):
		_ = cmd.Process.Kill()
		g.logf("the courier did not stop within %s: killed (%v)", g.Grace, <-exited)
	}
}

func (g *Gate) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(g.DSN)
	if err != nil {
		return nil, errors.New("the DSN does not parse")
	}
	cfg.RuntimeParams["application_name"] = ApplicationPrefix + g.Pod
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > g.Retry*2 {
		cfg.ConnectTimeout = g.Retry * 2
	}
	return pgx.ConnectConfig(ctx, cfg)
}

func ping(ctx context.Context, conn *pgx.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return conn.Ping(ctx)
}

func tryLock(ctx context.Context, conn *pgx.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var held bool
	err := conn.QueryRow(ctx, "select pg_try_advisory_lock($1, $2)", LockClassID, LockObjID).Scan(&held)
	return held, err
}

// closeConn ends the session, which releases the lock if it held it.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// Holder says which pod's gate holds the lock on the database of dsn ("" if none).
func Holder(ctx context.Context, dsn string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", errors.New("the DSN does not parse")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer closeConn(conn)
	var app *string
	err = conn.QueryRow(ctx, `select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid
		where l.locktype = 'advisory' and l.granted and l.classid = $1 and l.objid = $2 and l.objsubid = 2
		and l.database = (select oid from pg_database where datname = current_database())`,
		uint32(LockClassID), uint32(LockObjID)).Scan(&app)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if app == nil {
		return "", errors.New("the lock is held by a session whose name this role cannot read")
	}
	return strings.TrimPrefix(*app, ApplicationPrefix), nil
}

// ReadDSN reads the dsn of a rendered kratos.yaml and returns it as Kratos's driver uses it.
func ReadDSN(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c struct {
		DSN string `json:"dsn"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if c.DSN == "" {
		return "", fmt.Errorf("%s has no dsn", path)
	}
	return config.DriverDSN(c.DSN)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
