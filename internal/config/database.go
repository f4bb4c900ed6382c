package config

import (
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
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
// the driver's default applies), else the discrete keys, URL-escaped into a DSN. Whichever it
// is, the DSN is one that Kratos parses (checkKratosDSN).
func postgresDSN(s *source) (string, error) {
	if v, ok, err := s.text("dsn"); err != nil {
		return "", err
	} else if ok {
		dsn, err := checkDSN(s, "dsn", v)
		if err != nil {
			return "", err
		}
		return dsn, checkKratosDSN(s, "dsn", dsn)
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
		return dsn, checkKratosDSN(s, "uri", dsn)
	}
	dsn, err := composePostgresDSN(s)
	if err != nil {
		return "", err
	}
	// Composed from checked parts, so this holds; checked all the same, as what Kratos reads.
	return dsn, checkKratosDSN(s, "host", dsn)
}

// Why a DSN is refused, one fixed message per kind: the value is never echoed, nor is the
// parsers' error text, which quotes the DSN (url.Parse's always does, pgx's when the URL does
// not parse or the password sits in the query).
const (
	dsnUnparsable = "not a connection URL that Kratos can parse (a reserved character in the password must be percent-encoded, e.g. % as %25, / as %2F, ? as %3F, # as %23, @ as %40)"
	dsnQuery      = "its query is not one that Kratos can parse (percent-encode reserved characters in the values, e.g. % as %25)"
	dsnDriver     = "Kratos's Postgres driver (pgx) refuses it: check the host, the port (1-65535) and the query parameters (sslmode, connect_timeout, target_session_attrs, ...)"
	dsnQueryPW    = "holds a password as query parameter %s, which Kratos's driver would quote in its errors; put it in the URL's user info: postgres://USER:PASSWORD@HOST/DBNAME"
)

// kratosPoolParams are the query parameters Kratos takes off the DSN before pop sees it
// (ory/x sqlcon.ParseConnectionOptions).
var kratosPoolParams = []string{"max_conns", "max_idle_conns", "max_conn_lifetime", "max_conn_idle_time"}

// pgFileParams make pgx read files while it parses. Those files would be in the Kratos
// container (its image: injection mounts nothing else there), not here, so the check leaves
// them out; a missing one makes pgx fail with the DSN quoted but its password masked (and a
// password in the query is refused).
var pgFileParams = []string{"sslrootcert", "sslcert", "sslkey", "service", "servicefile", "passfile"}

// checkKratosDSN refuses a DSN that Kratos v1.3.1 could not parse, or would read as something
// else than was meant, before Kratos gets it: its driver then logs the DSN whole, password
// included, on every retry, and a crashing container's log may end up in the pod's status.
// It follows Kratos's path: ory/x sqlcon.ParseConnectionOptions strips the pool parameters,
// pop's ConnectionDetails parses the URL (pgconn v1's ParseConfig for postgres, url.Parse for
// cockroach, whose finalizer turns cockroach:// into postgres://) and pop opens it with the
// pgx v5 stdlib driver (pgx.ParseConfig). pgx v5.6.0 is the version Kratos v1.3.1 builds with.
func checkKratosDSN(s *source, key, dsn string) error {
	// A password with an unescaped '/', '?' or '#' ends the URL's authority early: what
	// follows the '@' it held then lands in the path or query, where no '@' belongs, and the
	// URL may well parse, with part of the password as the port ("u:12/pw@host" is host u,
	// port 12, database "pw@host"), which Kratos would log in its connection errors.
	rest := dsn[strings.Index(dsn, "://")+len("://"):] // checkDSN: the DSN has a scheme
	if i := strings.IndexAny(rest, "/?#"); i >= 0 && strings.ContainsAny(rest[i:], "@#") {
		return s.fail(key, dsnUnparsable)
	}
	if _, err := url.Parse(dsn); err != nil {
		return s.fail(key, dsnUnparsable)
	}

	cleaned, query, err := withoutPoolParams(dsn)
	if err != nil {
		return s.fail(key, dsnQuery)
	}
	for _, p := range []string{"password", "sslpassword"} {
		if query.Has(p) {
			return s.failf(key, dsnQueryPW, strconv.Quote(p))
		}
	}

	// pop: the dialect from the scheme; cockroach gets pop's generic url.Parse (whose error
	// quotes the URL) and its finalizer's rewrite.
	if cleaned, err = cockroachAsPostgres(cleaned); err != nil {
		return s.fail(key, dsnUnparsable)
	}
	// pgconn v1 (pop's URL parser) parses as pgx v5 does, and also min_read_buffer_size.
	if v := query.Get("min_read_buffer_size"); v != "" {
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return s.fail(key, dsnDriver)
		}
	}
	if _, err := pgx.ParseConfig(withoutParams(cleaned, pgFileParams)); err != nil {
		if _, uerr := url.Parse(cleaned); uerr != nil {
			return s.fail(key, dsnUnparsable)
		}
		return s.fail(key, dsnDriver)
	}
	return nil
}

// withoutPoolParams is sqlcon.ParseConnectionOptions: split at '?'; with exactly one, the query
// is parsed (an error ends it) and re-encoded without the pool parameters.
func withoutPoolParams(dsn string) (string, url.Values, error) {
	if parts := strings.Split(dsn, "?"); len(parts) == 2 {
		q, err := url.ParseQuery(parts[1])
		if err != nil {
			return "", nil, err
		}
		for _, p := range kratosPoolParams {
			q.Del(p)
		}
		return parts[0] + "?" + q.Encode(), q, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn, url.Values{}, nil //nolint:nilerr // pop reports it; the caller checks url.Parse itself
	}
	return dsn, u.Query(), nil
}

// cockroachAsPostgres is pop's cockroach finalizer, which turns cockroach:// into postgres://
// unless "://" occurs more than once; other DSNs are returned as they are.
func cockroachAsPostgres(dsn string) (string, error) {
	if !strings.HasPrefix(dsn, "cockroach://") {
		return dsn, nil
	}
	if _, err := url.Parse(dsn); err != nil {
		return "", err
	}
	parts := strings.Split(dsn, "://")
	if len(parts) != 2 {
		return "", errors.New("cockroach DSN with more than one ://")
	}
	return "postgres://" + parts[1], nil
}

// DriverDSN is the connection string Kratos's SQL driver connects with for the rendered dsn:
// the pool parameters taken off and cockroach:// spelled postgres://, as Kratos does. Other
// programs in the pod that must reach Kratos's own database (the courier gate) use it, so they
// connect exactly where and how Kratos does. Errors never quote the DSN.
func DriverDSN(dsn string) (string, error) {
	cleaned, _, err := withoutPoolParams(dsn)
	if err != nil {
		return "", errors.New("dsn: the query string does not parse")
	}
	if cleaned, err = cockroachAsPostgres(cleaned); err != nil {
		return "", errors.New("dsn: does not parse as a URL")
	}
	return cleaned, nil
}

// withoutParams is dsn without the query parameters names; dsn as is when it has none of them.
func withoutParams(dsn string, names []string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // pgx refuses it anyway
	}
	q := u.Query()
	found := false
	for _, n := range names {
		if q.Has(n) {
			q.Del(n)
			found = true
		}
	}
	if !found {
		return dsn
	}
	u.RawQuery = q.Encode()
	return u.String()
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
	if host, err = postgresHost(host); err != nil {
		return "", s.fail("host", err.Error())
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
		Scheme: "postgres",
		User:   url.UserPassword(user, password),
		Host:   net.JoinHostPort(host, port),
		Path:   "/" + dbname,
		// PathEscape leaves '@' (and '$') as they are; '@' is escaped too, so that no '@'
		// follows the authority (see checkKratosDSN).
		RawPath: "/" + strings.ReplaceAll(url.PathEscape(dbname), "@", "%40"),
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

// hostLabel is one label of a DNS name: letters, digits, '-' and '_' (seen in internal
// names), not starting or ending with '-'.
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)

// postgresHost checks the database Secret's host key: a DNS name or an IP address, IPv6 with
// or without brackets (returned without). Anything else (a '/', '@', ':' port, space, list)
// would change what the composed URL means, or break it.
func postgresHost(h string) (string, error) {
	const problem = "not a host name or IP address"
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		if ip := net.ParseIP(h[1 : len(h)-1]); ip != nil && strings.Contains(h, ":") {
			return h[1 : len(h)-1], nil
		}
		return "", errors.New(problem + "; brackets hold an IPv6 address, e.g. [fd00::1]")
	}
	if net.ParseIP(h) != nil {
		return h, nil
	}
	name := strings.TrimSuffix(h, ".")
	if len(name) > 253 || name == "" {
		return "", errors.New(problem)
	}
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[:i], ":") {
		if _, err := strconv.Atoi(h[i+1:]); err == nil {
			return "", errors.New(problem + `; put the port in key "port"`)
		}
	}
	for l := range strings.SplitSeq(name, ".") {
		if !hostLabel.MatchString(l) {
			return "", errors.New(problem + ` (letters, digits, '-', '.'), e.g. pg-rw.db.svc; a full URL goes in key "dsn"`)
		}
	}
	return h, nil
}

// PostgresDSN is the DSN Kratos gets from the database Secret name holding data, as `webhook
// render` composes it from the mounted Secret: for the plugin, which reads the Secret through
// the API to look at the database itself (migrate --status). Errors name the Secret and key,
// never a value.
func PostgresDSN(name string, data map[string][]byte) (string, error) {
	s := &source{kind: "secret", name: name, data: data}
	if data == nil {
		s.data = map[string][]byte{}
	}
	if len(s.data) == 0 {
		return "", s.fail("", "has no keys")
	}
	return postgresDSN(s)
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

// PgxConfig is the connection config of dsn (PostgresDSN's) as Kratos connects with it: the
// pool parameters, which Kratos strips, stripped; cockroach:// read as postgres://. Its error
// never quotes the DSN (pgx's would, password included).
func PgxConfig(dsn string) (*pgx.ConnConfig, error) {
	cleaned := dsn
	if parts := strings.Split(dsn, "?"); len(parts) == 2 {
		q, err := url.ParseQuery(parts[1])
		if err != nil {
			return nil, errors.New(dsnQuery)
		}
		for _, p := range kratosPoolParams {
			q.Del(p)
		}
		cleaned = parts[0] + "?" + q.Encode()
	}
	if rest, ok := strings.CutPrefix(cleaned, "cockroach://"); ok {
		cleaned = "postgres://" + rest
	}
	cfg, err := pgx.ParseConfig(cleaned)
	if err != nil {
		return nil, errors.New(dsnDriver)
	}
	return cfg, nil
}
