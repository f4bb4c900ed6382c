// Package kratostest runs a real Ory Kratos v1.3.1 for tests, without Kubernetes: SQLite in a
// temp dir, the project's two identity schemas (default and admin), every self-service method
// the actions touch, on free 127.0.0.1 ports. It also drives the self-service API the way an
// end user would (login, whoami, TOTP and lookup-secret enrolment) so that tests check the
// actions' effects, not only the admin API's answers.
package kratostest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// Binary locates the Kratos binary: $KRATOS_BIN, else the project's tool cache. A missing
// binary is an error (tests fail, never skip).
func Binary() (string, error) {
	if p := os.Getenv("KRATOS_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("KRATOS_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	cache := os.Getenv("KRATOS_INJECTOR_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("locate the Kratos binary: %w", err)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "kratos-injector")
	}
	p := filepath.Join(cache, "bin", "kratos")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Kratos binary at %s (or $KRATOS_BIN): run make tools", p)
	}
	return p, nil
}

// Server is a running Kratos.
type Server struct {
	AdminURL   string
	PublicURL  string
	Dir        string
	ConfigPath string
	Bin        string

	// HTTPClient, when set, carries the self-service calls (LoginPassword, Whoami, EnrolTOTP...)
	// instead of http.DefaultClient: e.g. one that dials a port-forward for PublicURL's host, so
	// that the flows' own action URLs (on Kratos's configured base URL) reach the pod.
	HTTPClient *http.Client

	// MigrateDuration and StartDuration are how long `migrate sql` and serve-to-ready took.
	MigrateDuration time.Duration
	StartDuration   time.Duration

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// Start writes a config into a new temp dir, migrates its SQLite database with
// actions.MigrateCommand, and serves Kratos until Stop. On failure the end of Kratos's log is in
// the error.
func Start() (*Server, error) {
	return start(func(dir string, pub, adm, smtp int) (string, error) { return writeConfig(dir, pub, adm, smtp) })
}

// StartRendered serves the config that config.Render makes of spec, as the kratos-config init
// container renders it for a pod, instead of Start's: no Secrets or ConfigMaps (so spec must use
// SQLite; the secrets are random and mail goes nowhere), and spec.PublicURL replaced by the URL
// Kratos serves its public API on here. The tests of what the rendered config makes Kratos do
// use it (the flows' login UI pages, for one).
func StartRendered(spec config.Spec) (*Server, error) {
	if secrets, configMaps := spec.Inputs(); spec.Database != config.DatabaseSQLite || len(secrets)+len(configMaps) > 0 {
		return nil, fmt.Errorf("kratostest.StartRendered: the spec must use SQLite and name no Secret or ConfigMap")
	}
	return start(func(dir string, pub, _, _ int) (string, error) {
		spec.PublicURL = fmt.Sprintf("http://127.0.0.1:%d/", pub)
		inputs := filepath.Join(dir, "inputs")
		if err := os.Mkdir(inputs, 0o700); err != nil {
			return "", err
		}
		res, err := config.Render(&spec, config.RenderOptions{InputDir: inputs, ConfigDir: dir, DataDir: dir})
		if err != nil {
			return "", fmt.Errorf("render: %w", err)
		}
		if err := res.WriteFiles(dir); err != nil {
			return "", err
		}
		return filepath.Join(dir, config.ConfigFile), nil
	})
}

// start writes a config with write into a new temp dir, for Kratos on the given free ports
// (public, admin, and one for an SMTP server), migrates its database and serves it.
func start(write func(dir string, pub, adm, smtp int) (string, error)) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kratostest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Bin: bin, logPath: filepath.Join(dir, "kratos.log")}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()

	ports, err := testbed.FreePorts(3)
	if err != nil {
		return nil, err
	}
	pub, adm, smtp := ports[0], ports[1], ports[2]
	s.PublicURL = fmt.Sprintf("http://127.0.0.1:%d", pub)
	s.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", adm)
	if s.ConfigPath, err = write(dir, pub, adm, smtp); err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"SQA_OPT_OUT=true",
		"SERVE_PUBLIC_HOST=127.0.0.1", "SERVE_ADMIN_HOST=127.0.0.1",
		"SERVE_PUBLIC_PORT="+strconv.Itoa(pub), "SERVE_ADMIN_PORT="+strconv.Itoa(adm),
	)

	// The migration runs exactly as `kubectl kratos migrate` runs it in the pod.
	argv := actions.MigrateCommand(s.ConfigPath)
	start := time.Now()
	mig := exec.Command(bin, argv[1:]...)
	mig.Env = env
	out, err := mig.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out, 40))
	}
	s.MigrateDuration = time.Since(start)

	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	start = time.Now()
	s.cmd = exec.Command(bin, "serve", "-c", s.ConfigPath, "--dev", "--sqa-opt-out")
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kratos: %w", err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	if err := s.waitReady(60 * time.Second); err != nil {
		return nil, fmt.Errorf("%w\n--- end of kratos log (%s) ---\n%s", err, s.logPath, s.LogTail(40))
	}
	s.StartDuration = time.Since(start)
	ok = true
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("kratos exited before it was ready")
		default:
		}
		resp, err := hc.Get(s.AdminURL + "/admin/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kratos not ready at %s/admin/health/ready after %s", s.AdminURL, timeout)
}

// Stop kills the Kratos process this server started (by its PID) and removes the temp dir.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.Dir != "" && os.Getenv("KRATOSTEST_KEEP") == "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// LogTail returns the last n lines of Kratos's log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(b, n)
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WriteConfig writes, into dir, the config and schemas of a Kratos whose SQLite database is
// dir/db.sqlite (not yet migrated), and returns the config's path.
func WriteConfig(dir string) (string, error) {
	ports, err := testbed.FreePorts(3)
	if err != nil {
		return "", err
	}
	return writeConfig(dir, ports[0], ports[1], ports[2])
}

func writeConfig(dir string, pub, adm, smtp int) (string, error) {
	files := map[string]string{
		// The schemas an injected Kratos ships, so the actions are tested against them.
		"default.schema.json": string(config.BuiltinSchema(config.SchemaDefault)),
		"admin.schema.json":   string(config.BuiltinSchema(config.SchemaAdmin)),
		"code.schema.json":    codeSchema,
		"oidc.jsonnet":        oidcMapper,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return "", err
		}
	}
	r := strings.NewReplacer(
		"@DIR@", dir,
		"@PUB@", strconv.Itoa(pub),
		"@ADM@", strconv.Itoa(adm),
		"@SMTP@", strconv.Itoa(smtp),
	)
	p := filepath.Join(dir, "kratos.yaml")
	return p, os.WriteFile(p, []byte(r.Replace(configTemplate)), 0o600)
}

// Context is a test context with a deadline, so that a hung Kratos fails a test instead of
// stalling the run.
func Context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

// RecoveryUI is the configured recovery UI: admin-issued recovery links open a flow there.
const RecoveryUI = "http://127.0.0.1:4455/recovery"

// ErrUnauthorized is returned by Whoami for a session that is not (or no longer) valid.
var ErrUnauthorized = errors.New("401 Unauthorized")

const configTemplate = `dsn: sqlite://@DIR@/db.sqlite?_fk=true&mode=rwc
serve:
  public:
    base_url: http://127.0.0.1:@PUB@/
  admin:
    base_url: http://127.0.0.1:@ADM@/
identity:
  default_schema_id: default
  schemas:
    - id: default
      url: file://@DIR@/default.schema.json
    - id: admin
      url: file://@DIR@/admin.schema.json
    - id: code
      url: file://@DIR@/code.schema.json
selfservice:
  default_browser_return_url: http://127.0.0.1:4455/
  allowed_return_urls: [http://127.0.0.1:4455]
  methods:
    password:
      enabled: true
      config:
        haveibeenpwned_enabled: false
    totp:
      enabled: true
      config:
        issuer: kratostest
    lookup_secret:
      enabled: true
    code:
      enabled: true
    link:
      enabled: true
    oidc:
      enabled: true
      config:
        providers:
          - id: github
            provider: github
            client_id: test-client-id
            client_secret: test-client-secret
            mapper_url: file://@DIR@/oidc.jsonnet
            scope: [user:email]
          - id: generic
            provider: generic
            client_id: test-client-id
            client_secret: test-client-secret
            issuer_url: http://127.0.0.1:1/
            mapper_url: file://@DIR@/oidc.jsonnet
            scope: [openid, email]
  flows:
    error: {ui_url: http://127.0.0.1:4455/error}
    login: {ui_url: http://127.0.0.1:4455/login}
    registration: {ui_url: http://127.0.0.1:4455/registration}
    settings: {ui_url: http://127.0.0.1:4455/settings, privileged_session_max_age: 15m, required_aal: aal1}
    recovery: {enabled: true, use: code, ui_url: http://127.0.0.1:4455/recovery}
    verification: {enabled: false}
secrets:
  default: [kratostest-default-secret-0123456789]
  cookie: [kratostest-cookie-secret-0123456789]
  cipher: [kratostest-cipher-secret-0123456]
ciphers:
  algorithm: xchacha20-poly1305
hashers:
  algorithm: bcrypt
  bcrypt: {cost: 4}
courier:
  smtp:
    connection_uri: smtp://127.0.0.1:@SMTP@/?disable_starttls=true
    from_address: kratos@example.test
session:
  whoami:
    required_aal: aal1
log:
  level: warning
  format: text
`

// codeSchema makes the email a login identifier of the code (one-time code) method only: an
// identity of this schema and one of the default schema can share an email, which is how tests
// get several identities behind one --email.
const codeSchema = `{
  "$id": "https://kratos-injector.io/schemas/code.json",
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Code login",
  "type": "object",
  "properties": {
    "traits": {
      "type": "object",
      "properties": {
        "email": {
          "type": "string", "format": "email", "minLength": 3, "maxLength": 320,
          "ory.sh/kratos": {"credentials": {"code": {"identifier": true, "via": "email"}}}
        }
      },
      "required": ["email"],
      "additionalProperties": false
    }
  }
}
`

const oidcMapper = `local claims = std.extVar('claims');
{ identity: { traits: { email: claims.email } } }
`
