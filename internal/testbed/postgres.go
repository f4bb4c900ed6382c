package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Postgres is a PostgreSQL server (Debian's package) owned by the bed.
type Postgres struct {
	Host     string // 127.0.0.1
	Port     int
	Password string // of the "postgres" superuser
	Proc     *Proc
	socket   string
	psql     string
	cred     *syscall.Credential
	seq      atomic.Int64
	bed      *Bed
	bin      string
	args     []string
	restarts int
}

// PostgresOptions tunes the server.
type PostgresOptions struct {
	// ExtraListen are addresses to listen on besides 127.0.0.1 (the real node's bridge gateway,
	// so pods can reach it), with the CIDR allowed to connect from each.
	ExtraListen []string
	ExtraCIDRs  []string
}

// StartPostgres initialises a fresh cluster in the bed and starts it on 127.0.0.1 and a free port,
// with password (SCRAM) authentication over TCP and trust on its private socket.
func (b *Bed) StartPostgres(opts PostgresOptions) (*Postgres, error) {
	initdb, err := HostTool("initdb", "/usr/lib/postgresql/*/bin/initdb")
	if err != nil {
		return nil, err
	}
	bindir := filepath.Dir(initdb)
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		bindir = filepath.Dir(real)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Host: "127.0.0.1", Port: port, Password: randomToken(), psql: filepath.Join(bindir, "psql")}
	dir := b.Path("postgres")
	data := filepath.Join(dir, "data")
	pg.socket = filepath.Join(dir, "sock")
	if err := os.MkdirAll(pg.socket, 0o755); err != nil {
		return nil, err
	}
	// initdb refuses to run as root: run the server as the postgres user.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("postgres user missing (install Debian's postgresql: make tools): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, d := range []string{dir, pg.socket} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(pg.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if pg.cred != nil {
		_ = os.Chown(pwFile, int(pg.cred.Uid), int(pg.cred.Gid))
	}
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--pwfile", pwFile, "--auth-local=trust",
		"--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postgres initdb: %w\n%s", err, tailString(string(out), 20))
	}
	_ = os.Remove(pwFile)
	if len(opts.ExtraCIDRs) > 0 {
		var hba strings.Builder
		for _, c := range opts.ExtraCIDRs {
			fmt.Fprintf(&hba, "host all all %s scram-sha-256\n", c)
		}
		f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		_, _ = f.WriteString(hba.String())
		f.Close()
	}
	listen := strings.Join(append([]string{"127.0.0.1"}, opts.ExtraListen...), ",")
	pg.bed, pg.bin = b, filepath.Join(bindir, "postgres")
	pg.args = []string{"-D", data, "-p", strconv.Itoa(port), "-k", pg.socket,
		"-c", "listen_addresses=" + listen, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300"}
	if err := pg.start("postgres"); err != nil {
		return nil, err
	}
	return pg, nil
}

func (pg *Postgres) start(name string) error {
	p, err := pg.bed.startWith(pg.cred, name, nil, pg.bin, pg.args...)
	if err != nil {
		return err
	}
	pg.Proc = p
	p.StopSignal(syscall.SIGINT) // fast shutdown: SIGTERM would wait for pods' connections
	return p.WaitReady(60*time.Second, func(ctx context.Context) error {
		_, err := pg.SQL(ctx, "postgres", "select 1")
		return err
	})
}

// Stop stops the server (fast shutdown: open connections are cut), keeping its data.
func (pg *Postgres) Stop() { pg.Proc.Stop() }

// Start starts the stopped server again, on the same port with the same data, and waits until
// it answers.
func (pg *Postgres) Start() error {
	pg.restarts++
	return pg.start(fmt.Sprintf("postgres-%d", pg.restarts))
}

// SQL runs a statement as the superuser over the private socket and returns psql's output.
func (pg *Postgres) SQL(ctx context.Context, db, stmt string) (string, error) {
	cmd := exec.CommandContext(ctx, pg.psql, "-h", pg.socket, "-p", strconv.Itoa(pg.Port), "-U", "postgres",
		"-d", db, "-v", "ON_ERROR_STOP=1", "-qAtc", stmt)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("psql %q: %w: %s", stmt, err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Database is a fresh database with its own owner role.
type Database struct {
	Name, User, Password string
	Host                 string
	Port                 int
}

// DSN is the database's connection URI for the given host (127.0.0.1, or the bridge address for a
// pod), with every part URL-escaped.
func (d Database) DSN(host string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(d.User, d.Password),
		Host: fmt.Sprintf("%s:%d", host, d.Port), Path: "/" + d.Name, RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates a database owned by a new role. password may be empty for a random one;
// it may contain any character (quoted as an SQL literal).
func (pg *Postgres) NewDatabase(ctx context.Context, prefix, password string) (Database, error) {
	n := pg.seq.Add(1)
	d := Database{Name: fmt.Sprintf("%s_%d", prefix, n), User: fmt.Sprintf("%s_u%d", prefix, n), Password: password,
		Host: pg.Host, Port: pg.Port}
	if d.Password == "" {
		d.Password = randomToken()
	}
	if _, err := pg.SQL(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", d.User, strings.ReplaceAll(d.Password, "'", "''"))); err != nil {
		return d, err
	}
	if _, err := pg.SQL(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", d.Name, d.User)); err != nil {
		return d, err
	}
	return d, nil
}

// CreateRoleAndDatabase creates a login role with exactly this password and a database it owns,
// under exactly these names, which may hold any character (quoted identifiers and SQL string
// literals): for configs that name their own role and database. A database and role of these
// names left by an earlier run are dropped first.
func (pg *Postgres) CreateRoleAndDatabase(ctx context.Context, user, password, db string) error {
	for _, stmt := range []string{
		fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", QuoteIdent(db)),
		fmt.Sprintf("DROP ROLE IF EXISTS %s", QuoteIdent(user)),
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", QuoteIdent(user), QuoteLiteral(password)),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", QuoteIdent(db), QuoteIdent(user)),
	} {
		if _, err := pg.SQL(ctx, "postgres", stmt); err != nil {
			return err
		}
	}
	return nil
}

// QuoteIdent quotes an SQL identifier (any characters).
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QuoteLiteral quotes an SQL string literal (standard_conforming_strings is on by default).
func QuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
