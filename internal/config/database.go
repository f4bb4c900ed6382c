package config

import (
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
)

// sqliteDSN is the SQLite database in the pod's data emptyDir; _fk turns on the foreign keys
// Kratos's schema relies on, mode=rwc creates the file on first use.
func sqliteDSN(dataDir string) string {
	return "sqlite://" + filepath.Join(dataDir, "db.sqlite") + "?_fk=true&mode=rwc"
}

// dsnScheme matches the scheme of a connection URL.
var dsnScheme = regexp.MustCompile(`^([a-z][a-z0-9+.-]*)://`)

// postgresSchemes are the schemes Kratos's Postgres dialect accepts (CockroachDB speaks its wire
// protocol and has its own dialect in Kratos).
var postgresSchemes = []string{"postgres", "postgresql", "cockroach"}

var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// postgresDSN reads the database Secret: key dsn (used as is), else key uri (a
// CloudNativePG <cluster>-app Secret has it; kept as is, so its absent sslmode stays absent and
// the driver's default applies), else the discrete keys, URL-escaped into a DSN.
func postgresDSN(s *source) (string, error) {
	if v, ok, err := s.text("dsn"); err != nil {
		return "", err
	} else if ok {
		return checkDSN(s, "dsn", v)
	}
	if v, ok, err := s.text("uri"); err != nil {
		return "", err
	} else if ok {
		dsn, err := checkDSN(s, "uri", v)
		if err != nil {
			return "", err
		}
		// A uri is a URL by definition: check it parses and names a host, without echoing it.
		u, perr := url.Parse(dsn)
		if perr != nil || u.Host == "" {
			return "", s.fail("uri", "not a valid URL; expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME with special characters percent-encoded")
		}
		return dsn, nil
	}
	return composePostgresDSN(s)
}

// checkDSN checks a DSN given whole without ever repeating it (it carries the password).
func checkDSN(s *source, key, v string) (string, error) {
	if v == "" {
		return "", s.fail(key, "empty; put the connection URL there, or remove the key and use the host/port/username/password/dbname keys")
	}
	if !oneLine(v) {
		return "", s.fail(key, "holds a line break or control character; a DSN is one line")
	}
	m := dsnScheme.FindStringSubmatch(v)
	if m == nil {
		return "", s.fail(key, "not a connection URL; expected postgres://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=...")
	}
	if !slices.Contains(postgresSchemes, m[1]) {
		return "", s.failf(key, "scheme %q is not Postgres; use postgres:// (or set kratos-injector.io/database: sqlite for SQLite)", m[1])
	}
	return v, nil
}

// composePostgresDSN builds the DSN from host, port, username|user, password, dbname|database and
// sslmode, escaping the credentials and the database name so that any character survives.
func composePostgresDSN(s *source) (string, error) {
	const fix = `add it to the Secret or use key "dsn"`
	host, ok, err := s.text("host")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", s.fail("host", `missing; the Secret needs key "dsn", key "uri", or keys host, port, username, password and dbname`)
	}
	if host == "" || !oneLine(host) {
		return "", s.fail("host", "empty or not one line; "+fix)
	}
	port := "5432"
	if v, ok, err := s.text("port"); err != nil {
		return "", err
	} else if ok {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
			return "", s.fail("port", "not a port number (1-65535)")
		}
		port = v
	}
	user, userKey, ok, err := s.first("username", "user")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", s.fail("username", "missing (nor is there key \"user\"); "+fix)
	}
	if user == "" {
		return "", s.fail(userKey, "empty; "+fix)
	}
	password, err := s.required("password", fix)
	if err != nil {
		return "", err
	}
	dbname, dbKey, ok, err := s.first("dbname", "database")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", s.fail("dbname", "missing (nor is there key \"database\"); "+fix)
	}
	if dbname == "" {
		return "", s.fail(dbKey, "empty; "+fix)
	}
	u := url.URL{
		Scheme:  "postgres",
		User:    url.UserPassword(user, password),
		Host:    net.JoinHostPort(host, port),
		Path:    "/" + dbname,
		RawPath: "/" + url.PathEscape(dbname),
	}
	if mode, ok, err := s.text("sslmode"); err != nil {
		return "", err
	} else if ok {
		if !slices.Contains(sslModes, mode) {
			return "", s.failf("sslmode", "not a libpq sslmode; use one of %v", sslModes)
		}
		u.RawQuery = url.Values{"sslmode": {mode}}.Encode()
	}
	return u.String(), nil
}

// databaseDSN renders dsn for the spec's database.
func (r *renderer) databaseDSN() (string, error) {
	if r.spec.Database == DatabaseSQLite {
		r.warn("database sqlite: the data lives in the pod's emptyDir and is lost with the pod; run one replica, or set kratos-injector.io/database-secret for Postgres")
		return sqliteDSN(r.opts.DataDir), nil
	}
	s, err := r.openSecret(r.spec.DatabaseSecret)
	if err != nil {
		return "", err
	}
	return postgresDSN(s)
}
