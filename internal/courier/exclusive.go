package courier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/jackc/pgx/v5"
)

// The migration lock's second key ("MIGR"), with LockClassID: replicas that start together
// on a fresh database would otherwise run Kratos's migrations at the same time, and all but one
// fail (and restart) on the tables the first one creates.
const MigrateLockObjID int32 = 0x4d494752

// Exclusive runs command while it holds the database's migration lock, waiting for it as long
// as another pod holds it (that pod's migration ends, or its session does). It returns the
// command's error; the lock is released when it returns.
func Exclusive(ctx context.Context, dsn, pod string, command []string, stdout, stderr, log io.Writer) error {
	if len(command) == 0 {
		return errors.New("no command")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return errors.New("the DSN does not parse")
	}
	cfg.RuntimeParams["application_name"] = "kratos-migrate:" + pod
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to the database: %w", err)
	}
	defer closeConn(conn)
	var held bool
	if err := conn.QueryRow(ctx, "select pg_try_advisory_lock($1, $2)", LockClassID, MigrateLockObjID).Scan(&held); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	if !held {
		fmt.Fprintf(log, "%s migration gate: another pod is migrating this database; waiting for it\n", time.Now().UTC().Format(time.RFC3339))
		start := time.Now()
		if _, err := conn.Exec(ctx, "select pg_advisory_lock($1, $2)", LockClassID, MigrateLockObjID); err != nil {
			return fmt.Errorf("wait for the migration lock: %w", err)
		}
		fmt.Fprintf(log, "%s migration gate: the other migration ended after %s; migrating\n", time.Now().UTC().Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...) //nolint:gosec // the command is the injected container's own args
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd.Run()
}
