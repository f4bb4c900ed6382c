package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// minRenderCases is how many golden cases internal/config/testdata holds at least: a case that
// goes missing (renamed without its spec.json, say) fails here instead of silently not booting.
const minRenderCases = 7

// TestRenderGoldenBootsKratos boots the real Kratos on every golden case of internal/config: the
// case's inputs are copied, only the hosts and ports of its database and SMTP Secrets are pointed
// at the bed's Postgres and a Mailpit, and config.Render (what `webhook render` runs) writes the
// config Kratos then migrates and serves. Each case then proves what its config says: the identity
// schemas, the login methods and OIDC providers, the settings methods, mail delivery with the
// configured sender, and that the rendered DSN (URL-escaped credentials) is what connected.
func TestRenderGoldenBootsKratos(t *testing.T) {
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	td := filepath.Join(root, "internal", "config", "testdata")
	entries, err := os.ReadDir(td)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(td, e.Name(), "spec.json")); err == nil && e.IsDir() {
			cases = append(cases, e.Name())
		}
	}
	if len(cases) < minRenderCases {
		t.Fatalf("found %d golden cases with spec.json under %s (%v), want at least %d: was a case lost?",
			len(cases), td, cases, minRenderCases)
	}
	b := theBed(t)
	for _, c := range cases {
		t.Run(c, func(t *testing.T) { bootRenderCase(t, b, filepath.Join(td, c), c) })
	}
}

// bootRenderCase runs one golden case end to end.
func bootRenderCase(t *testing.T, b *testbed.Bed, caseDir, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	spec, err := config.UnmarshalSpec(string(mustRead(t, filepath.Join(caseDir, "spec.json"))))
	if err != nil {
		t.Fatalf("spec.json: %v", err)
	}
	golden := map[string]any{}
	if err := yaml.Unmarshal(mustRead(t, filepath.Join(caseDir, "golden", config.ConfigFile)), &golden); err != nil {
		t.Fatalf("golden kratos.yaml: %v", err)
	}

	tmp := t.TempDir()
	in, out, data := filepath.Join(tmp, "inputs"), filepath.Join(tmp, "out"), filepath.Join(tmp, "data")
	if err := renderCopyInputs(filepath.Join(caseDir, "inputs"), in); err != nil {
		t.Fatalf("copy inputs: %v", err)
	}

	// The database: the role and database the Secret names, with its password, in the bed's
	// Postgres; the Secret's host and port (only) now point there.
	var db *renderDB
	if spec.Database == config.DatabasePostgres {
		pg := postgres(t)
		db, err = renderPointDatabase(config.SecretDir(in, spec.DatabaseSecret), pg)
		if err != nil {
			t.Fatalf("database secret %s: %v", spec.DatabaseSecret, err)
		}
		if err := pg.CreateRoleAndDatabase(ctx, db.user, db.password, db.name); err != nil {
			t.Fatalf("create the Secret's role and database: %v", err)
		}
	}

	// The SMTP server: the shared Mailpit for plain SMTP without credentials, else a Mailpit of
	// this case's own speaking the Secret's transport and accepting only the Secret's credentials.
	var env []string
	var mp *testbed.Mailpit
	if spec.SMTPSecret != "" {
		var caFile string
		mp, caFile = renderSMTPServer(t, b, config.SecretDir(in, spec.SMTPSecret), name)
		if caFile != "" {
			env = append(env, "SSL_CERT_FILE="+caFile)
		}
	}

	res, err := config.Render(spec, config.RenderOptions{InputDir: in, ConfigDir: out, DataDir: data})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if err := res.WriteFiles(out); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}

	// A config that cannot connect makes Kratos retry forever: bound the migration and boot.
	bootCtx, bootCancel := context.WithTimeout(ctx, 90*time.Second)
	defer bootCancel()
	start := time.Now()
	k, err := b.StartKratos(bootCtx, testbed.KratosOptions{Name: "kratos-render-" + name, ConfigFile: filepath.Join(out, config.ConfigFile),
		Env: env, Migrate: true, Dev: true, WatchCourier: spec.Courier == config.CourierWatch})
	if err != nil {
		t.Fatalf("the rendered config does not boot Kratos: %v", err)
	}
	t.Cleanup(k.Proc.Stop)
	t.Logf("Kratos ready in %s (log %s)", time.Since(start).Round(time.Millisecond), k.Proc.LogPath)
	kc := &renderClient{t: t, k: k, ctx: ctx, http: &http.Client{Timeout: 20 * time.Second}}

	// Identity schemas: the built-in default and admin, or the ConfigMap's plus admin.
	wantSchemas := renderWantSchemas(t, spec, in)
	if g := renderGoldenSchemas(golden); !slices.Equal(g, wantSchemas) {
		t.Errorf("golden kratos.yaml has schemas %v, the spec implies %v", g, wantSchemas)
	}
	var schemas []struct {
		ID string `json:"id"`
	}
	kc.must(kc.do(http.MethodGet, k.PublicURL+"/schemas", nil, http.StatusOK, &schemas))
	var gotSchemas []string
	for _, s := range schemas {
		gotSchemas = append(gotSchemas, s.ID)
	}
	sort.Strings(gotSchemas)
	if !slices.Equal(gotSchemas, wantSchemas) {
		t.Errorf("GET /schemas lists %v, want %v", gotSchemas, wantSchemas)
	}

	localIDP := spec.HasFeature(config.FeatureLocalIDP)
	if g := renderMethodEnabled(golden, "password"); g != localIDP {
		t.Errorf("golden kratos.yaml: password enabled %v, but local-idp in features is %v", g, localIDP)
	}
	identifierFirst := renderDig(golden, "selfservice", "flows", "login", "style") == "identifier_first"

	// An identity of the default schema with a password (the admin API imports credentials even
	// when the password method is off: then logging in with it must fail).
	email := fmt.Sprintf("render-%s-%d@example.com", name, time.Now().UnixNano()%1_000_000_000)
	const password = "Corr3ct-horse-battery-staple!"
	var ident struct {
		ID string `json:"id"`
	}
	kc.must(kc.do(http.MethodPost, k.AdminURL+"/admin/identities", map[string]any{
		"schema_id": spec.DefaultSchema,
		"traits":    map[string]any{"email": email},
		"credentials": map[string]any{
			"password": map[string]any{"config": map[string]any{"password": password}},
		},
	}, http.StatusCreated, &ident))

	// A fresh API login flow: every IdP Secret's provider, the password method iff local-idp.
	var login renderFlow
	kc.must(kc.do(http.MethodGet, k.PublicURL+"/self-service/login/api", nil, http.StatusOK, &login))
	groups := login.groups()
	wantProviders := renderWantProviders(t, spec, in)
	if got := login.providers(); !slices.Equal(got, wantProviders) {
		t.Errorf("login flow offers OIDC providers %v, want %v (groups %v)", got, wantProviders, groups)
	}
	t.Logf("login flow: groups %v, OIDC providers %v", groups, login.providers())
	if identifierFirst {
		if !slices.Contains(groups, "identifier_first") {
			t.Errorf("login style identifier_first, but the login flow has groups %v", groups)
		}
		// The second step shows the identity's methods.
		var step renderFlow
		status, body := kc.post(k.PublicURL+"/self-service/login?flow="+login.ID,
			map[string]any{"method": "identifier_first", "identifier": email}, &step)
		t.Logf("login flow after the identifier step: groups %v", step.groups())
		if got := slices.Contains(step.groups(), "password"); got != localIDP {
			t.Errorf("after the identifier step (HTTP %d) the password method shows: %v, want %v (local-idp); groups %v, body %.300s",
				status, got, localIDP, step.groups(), body)
		}
	} else if got := slices.Contains(groups, "password"); got != localIDP {
		t.Errorf("login flow shows the password method: %v, want %v (local-idp); groups %v", got, localIDP, groups)
	}
	var login2 renderFlow
	kc.must(kc.do(http.MethodGet, k.PublicURL+"/self-service/login/api", nil, http.StatusOK, &login2))
	var session struct {
		Token string `json:"session_token"`
	}
	status, body := kc.post(k.PublicURL+"/self-service/login?flow="+login2.ID,
		map[string]any{"method": "password", "identifier": email, "password": password}, &session)
	if loggedIn := status == http.StatusOK && session.Token != ""; loggedIn != localIDP {
		t.Errorf("password login succeeded: %v (HTTP %d), want %v (local-idp): %.300s", loggedIn, status, localIDP, body)
	}

	// With a session (browser flows: WebAuthn is offered to browsers only), the settings flow
	// shows exactly the methods the config enables.
	if localIDP {
		groups := kc.browserSettingsGroups(email, password)
		t.Logf("settings flow: groups %v", groups)
		for _, m := range []string{"password", "profile", "totp", "lookup_secret", "webauthn", "passkey", "oidc"} {
			want := renderMethodEnabled(golden, m)
			if m == "oidc" {
				want = want && len(wantProviders) > 0
			}
			if got := slices.Contains(groups, m); got != want {
				t.Errorf("settings flow shows method %s: %v, want %v (golden kratos.yaml); groups %v", m, got, want, groups)
			}
		}
	}

	// Mail: a recovery (else verification) code reaches the SMTP server with the configured sender.
	if spec.SMTPSecret != "" && spec.Courier == config.CourierWatch {
		flowName := ""
		switch {
		case renderDig(golden, "selfservice", "flows", "recovery", "enabled") == true:
			flowName = "recovery"
		case renderDig(golden, "selfservice", "flows", "verification", "enabled") == true:
			flowName = "verification"
		default:
			t.Fatalf("SMTP Secret and courier watch, but neither recovery nor verification is enabled: no mail to prove delivery with")
		}
		var f renderFlow
		kc.must(kc.do(http.MethodGet, k.PublicURL+"/self-service/"+flowName+"/api", nil, http.StatusOK, &f))
		var sent renderFlow
		status, body := kc.post(k.PublicURL+"/self-service/"+flowName+"?flow="+f.ID,
			map[string]any{"method": "code", "email": email}, &sent)
		if status != http.StatusOK {
			t.Fatalf("%s flow: HTTP %d: %.500s", flowName, status, body)
		}
		mctx, mcancel := context.WithTimeout(ctx, 60*time.Second)
		msg, err := mp.WaitMessageTo(mctx, email)
		mcancel()
		if err != nil {
			t.Fatalf("%s mail: %v\ncourier lines of %s:\n%s", flowName, err, k.Proc.LogPath, renderGrepLog(k.Proc.LogPath, "courier", "smtp", "mail"))
		}
		wantAddr, _ := renderDig(golden, "courier", "smtp", "from_address").(string)
		wantName, _ := renderDig(golden, "courier", "smtp", "from_name").(string)
		if msg.From.Address != wantAddr || msg.From.Name != wantName {
			t.Errorf("%s mail from %q <%s>, want %q <%s> (golden kratos.yaml)", flowName, msg.From.Name, msg.From.Address, wantName, wantAddr)
		}
		t.Logf("%s mail %q from %q <%s> arrived", flowName, msg.Subject, msg.From.Name, msg.From.Address)
	}

	// Postgres: the identity lives in the database the Secret names, whose tables the Secret's
	// role created: the rendered DSN, with its escaped credentials and name, is what connected.
	if db != nil {
		pg := postgres(t)
		n, err := pg.SQL(ctx, db.name, "SELECT count(*) FROM identities WHERE id = "+testbed.QuoteLiteral(ident.ID))
		if err != nil || n != "1" {
			t.Errorf("identity %s in database %q: count %q, %v", ident.ID, db.name, n, err)
		}
		owner, err := pg.SQL(ctx, db.name, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'identities'")
		if err != nil || owner != db.user {
			t.Errorf("table identities in database %q owned by %q (%v), want the Secret's role %q", db.name, owner, err, db.user)
		}
	}
}

// renderCopyInputs copies a case's inputs, symlinks as symlinks (the kubelet's ..data layout).
func renderCopyInputs(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(link) {
				return fmt.Errorf("%s: absolute symlink %s would leave the copy", p, link)
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
	})
}

// renderReadKey reads a mounted Secret key as the renderer does (one trailing newline dropped).
func renderReadKey(dir, key string) (string, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, key))
	if os.IsNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), true, nil
}

// renderWriteKey replaces a key's value (through the kubelet's symlinks, inside the copy).
func renderWriteKey(dir, key, value string) error {
	return os.WriteFile(filepath.Join(dir, key), []byte(value), 0o644)
}

// renderFirstKey reads the first of keys present ("" when none is).
func renderFirstKey(dir string, keys ...string) (string, error) {
	for _, k := range keys {
		if v, ok, err := renderReadKey(dir, k); err != nil || ok {
			return v, err
		}
	}
	return "", nil
}

// renderReplaceHost replaces the host:port of a URL in its raw text, leaving every other byte
// (and so the Secret's escaping) as it was.
func renderReplaceHost(raw, hostPort string) (string, error) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", fmt.Errorf("not a URL")
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	at := strings.LastIndex(auth, "@")
	out := raw[:i+3] + auth[:at+1] + hostPort + rest[end:]
	// Only the host changed.
	before, err1 := url.Parse(raw)
	after, err2 := url.Parse(out)
	if err1 != nil || err2 != nil || after.Host != hostPort || after.User.String() != before.User.String() ||
		after.Path != before.Path || after.RawQuery != before.RawQuery || after.Scheme != before.Scheme {
		return "", fmt.Errorf("rewriting the host changed more than the host (%v, %v)", err1, err2) //nolint:errorlint // may be nil: printed for the reader, not wrapped
	}
	return out, nil
}

// renderDB is the role and database a database Secret names.
type renderDB struct{ user, password, name string }

// renderPointDatabase points the Secret's host and port (keys dsn and uri, and the discrete
// host/port) at pg, and returns the credentials and database name the Secret holds.
func renderPointDatabase(dir string, pg *testbed.Postgres) (*renderDB, error) {
	hostPort := net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port))
	var db *renderDB
	for _, key := range []string{"dsn", "uri"} {
		v, ok, err := renderReadKey(dir, key)
		if err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		nv, err := renderReplaceHost(v, hostPort)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key, err)
		}
		if err := renderWriteKey(dir, key, nv); err != nil {
			return nil, err
		}
		if db == nil { // dsn wins over uri, as in the renderer
			u, err := url.Parse(v)
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", key, err)
			}
			pw, _ := u.User.Password()
			db = &renderDB{user: u.User.Username(), password: pw, name: strings.TrimPrefix(u.Path, "/")}
		}
	}
	if _, ok, err := renderReadKey(dir, "host"); err != nil {
		return nil, err
	} else if ok {
		if err := renderWriteKey(dir, "host", pg.Host); err != nil {
			return nil, err
		}
		if err := renderWriteKey(dir, "port", strconv.Itoa(pg.Port)); err != nil {
			return nil, err
		}
	}
	if db != nil {
		return db, nil
	}
	user, err := renderFirstKey(dir, "username", "user")
	if err != nil {
		return nil, err
	}
	pw, _, err := renderReadKey(dir, "password")
	if err != nil {
		return nil, err
	}
	name, err := renderFirstKey(dir, "dbname", "database")
	if err != nil {
		return nil, err
	}
	if user == "" || name == "" {
		return nil, fmt.Errorf("no dsn, uri, or user and database name")
	}
	return &renderDB{user: user, password: pw, name: name}, nil
}

// renderSMTPServer starts (or picks) the Mailpit for an SMTP Secret and points the Secret's host and
// port at it. It returns the CA file Kratos must trust when the Secret verifies TLS, else "".
func renderSMTPServer(t *testing.T, b *testbed.Bed, dir, name string) (*testbed.Mailpit, string) {
	t.Helper()
	transport, skipVerify := "starttls", false // the renderer's default transport
	var user, password string
	uri, hasURI, err := renderReadKey(dir, "uri")
	if err != nil {
		t.Fatal(err)
	}
	if hasURI {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("smtp uri: %v", err)
		}
		switch {
		case u.Scheme == "smtps":
			transport = "tls"
		case u.Query().Get("disable_starttls") == "true":
			transport = "none"
		}
		skipVerify = u.Query().Get("skip_ssl_verify") == "true"
		user = u.User.Username()
		password, _ = u.User.Password()
	} else {
		if v, ok, err := renderReadKey(dir, "transport_security"); err != nil {
			t.Fatal(err)
		} else if ok {
			transport = v
		}
		if v, ok, err := renderReadKey(dir, "skip_ssl_verify"); err != nil {
			t.Fatal(err)
		} else if ok && v != "" {
			if skipVerify, err = strconv.ParseBool(v); err != nil {
				t.Fatalf("skip_ssl_verify: %v", err)
			}
		}
		if user, _, err = renderReadKey(dir, "user"); err != nil {
			t.Fatal(err)
		}
		if password, _, err = renderReadKey(dir, "password"); err != nil {
			t.Fatal(err)
		}
	}

	var m *testbed.Mailpit
	caFile := ""
	if transport == "none" && user == "" {
		m = mailpit(t)
	} else {
		opts := testbed.MailpitOptions{Name: "mailpit-render-" + name}
		tmp := t.TempDir()
		if transport != "none" {
			ca, err := testbed.NewCA("render-smtp-ca")
			if err != nil {
				t.Fatal(err)
			}
			if err := ca.WriteServing(tmp, "127.0.0.1", "127.0.0.1"); err != nil {
				t.Fatal(err)
			}
			opts.TLSCertFile, opts.TLSKeyFile = filepath.Join(tmp, "tls.crt"), filepath.Join(tmp, "tls.key")
			opts.RequireTLS, opts.RequireSTARTTLS = transport == "tls", transport == "starttls"
			if !skipVerify {
				caFile = filepath.Join(tmp, "ca.crt")
				if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if user != "" {
			opts.AuthFile = filepath.Join(tmp, "smtp-auth")
			if err := os.WriteFile(opts.AuthFile, []byte(user+":"+password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if m, err = b.StartMailpit(opts); err != nil {
			t.Fatalf("mailpit (%s): %v", transport, err)
		}
		t.Cleanup(m.Proc.Stop)
		t.Logf("own Mailpit: transport %s, skip_ssl_verify %v, credentials %v", transport, skipVerify, user != "")
	}

	hostPort := net.JoinHostPort(m.SMTPHost, strconv.Itoa(m.SMTPPort))
	if hasURI {
		nv, err := renderReplaceHost(uri, hostPort)
		if err != nil {
			t.Fatalf("smtp uri: %v", err)
		}
		if err := renderWriteKey(dir, "uri", nv); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := renderWriteKey(dir, "host", m.SMTPHost); err != nil {
			t.Fatal(err)
		}
		if err := renderWriteKey(dir, "port", strconv.Itoa(m.SMTPPort)); err != nil {
			t.Fatal(err)
		}
	}
	return m, caFile
}

// renderWantSchemas are the identity schema ids the spec implies: the built-in default and admin,
// or the ConfigMap's <id>.json keys plus admin.
func renderWantSchemas(t *testing.T, spec *config.Spec, in string) []string {
	t.Helper()
	ids := []string{config.SchemaAdmin}
	if spec.IdentitySchemas == "" {
		ids = append(ids, config.SchemaDefault)
	} else {
		entries, err := os.ReadDir(config.ConfigMapDir(in, spec.IdentitySchemas))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(e.Name(), "..") && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	if !slices.Contains(ids, spec.DefaultSchema) {
		t.Fatalf("default schema %q is not among %v", spec.DefaultSchema, ids)
	}
	return ids
}

// renderGoldenSchemas are the schema ids of the golden kratos.yaml.
func renderGoldenSchemas(golden map[string]any) []string {
	list, _ := renderDig(golden, "identity", "schemas").([]any)
	var ids []string
	for _, s := range list {
		if m, ok := s.(map[string]any); ok {
			id, _ := m["id"].(string)
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// renderWantProviders are the provider ids of the spec's IdP Secrets: key id, else the provider type.
func renderWantProviders(t *testing.T, spec *config.Spec, in string) []string {
	t.Helper()
	var ids []string
	for _, s := range spec.IDPSecrets {
		id, ok, err := renderReadKey(config.SecretDir(in, s), "id")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if id, _, err = renderReadKey(config.SecretDir(in, s), "provider"); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// renderDig returns the value at a path of nested maps, or nil.
func renderDig(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// renderMethodEnabled reports whether the golden config enables selfservice method m.
func renderMethodEnabled(golden map[string]any, m string) bool {
	return renderDig(golden, "selfservice", "methods", m, "enabled") == true
}

// renderFlow is the part of a self-service flow the test reads.
type renderFlow struct {
	ID string `json:"id"`
	UI struct {
		Nodes []struct {
			Group      string `json:"group"`
			Attributes struct {
				Name  string `json:"name"`
				Value any    `json:"value"`
			} `json:"attributes"`
		} `json:"nodes"`
	} `json:"ui"`
}

// groups are the flow's node groups, sorted.
func (f *renderFlow) groups() []string {
	var gs []string
	for _, n := range f.UI.Nodes {
		if !slices.Contains(gs, n.Group) {
			gs = append(gs, n.Group)
		}
	}
	sort.Strings(gs)
	return gs
}

// providers are the values of the flow's OIDC provider buttons, sorted.
func (f *renderFlow) providers() []string {
	var ps []string
	for _, n := range f.UI.Nodes {
		if v, ok := n.Attributes.Value.(string); ok && n.Group == "oidc" && n.Attributes.Name == "provider" {
			ps = append(ps, v)
		}
	}
	sort.Strings(ps)
	return ps
}

// csrf is the flow's CSRF token (browser flows).
func (f *renderFlow) csrf() string {
	for _, n := range f.UI.Nodes {
		if v, ok := n.Attributes.Value.(string); ok && n.Attributes.Name == "csrf_token" {
			return v
		}
	}
	return ""
}

// renderClient talks JSON to one Kratos; failures carry the end of its log.
type renderClient struct {
	t    *testing.T
	k    *testbed.Kratos
	ctx  context.Context
	http *http.Client
}

func (kc *renderClient) must(err error) {
	kc.t.Helper()
	if err != nil {
		kc.t.Fatalf("%v\nend of %s:\n%s", err, kc.k.Proc.LogPath, kc.k.Proc.Tail(10))
	}
}

// request sends a JSON request (body may be nil) and returns the status and body.
func (kc *renderClient) request(c *http.Client, method, u string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(kc.ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// do sends a request, wants status, and decodes the answer into out (when not nil).
func (kc *renderClient) do(method, u string, body any, want int, out any) error {
	return kc.doWith(kc.http, method, u, body, want, out)
}

func (kc *renderClient) doWith(c *http.Client, method, u string, body any, want int, out any) error {
	status, b, err := kc.request(c, method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	if status != want {
		return fmt.Errorf("%s %s: HTTP %d, want %d: %.500s", method, u, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w: %.300s", method, u, err, b)
		}
	}
	return nil
}

// post submits a flow and returns the status and body, decoding the body into out when it is JSON.
func (kc *renderClient) post(u string, body, out any) (int, []byte) {
	kc.t.Helper()
	status, b, err := kc.request(kc.http, http.MethodPost, u, body)
	kc.must(err)
	_ = json.Unmarshal(b, out)
	return status, b
}

// browserSettingsGroups logs in as a browser (cookies, CSRF) with the password and returns the
// node groups of a fresh settings flow.
func (kc *renderClient) browserSettingsGroups(email, password string) []string {
	kc.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		kc.t.Fatal(err)
	}
	c := &http.Client{Timeout: kc.http.Timeout, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var login renderFlow
	kc.must(kc.doWith(c, http.MethodGet, kc.k.PublicURL+"/self-service/login/browser", nil, http.StatusOK, &login))
	kc.must(kc.doWith(c, http.MethodPost, kc.k.PublicURL+"/self-service/login?flow="+login.ID, map[string]any{
		"method": "password", "identifier": email, "password": password, "csrf_token": login.csrf(),
	}, http.StatusOK, nil))
	var settings renderFlow
	kc.must(kc.doWith(c, http.MethodGet, kc.k.PublicURL+"/self-service/settings/browser", nil, http.StatusOK, &settings))
	return settings.groups()
}

// renderGrepLog returns the lines of a log holding any of words (case-insensitive), at most the last 10.
func renderGrepLog(path string, words ...string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var hits []string
	for _, l := range strings.Split(string(data), "\n") {
		ll := strings.ToLower(l)
		for _, w := range words {
			if strings.Contains(ll, w) {
				hits = append(hits, l)
				break
			}
		}
	}
	if len(hits) > 10 {
		hits = hits[len(hits)-10:]
	}
	return strings.Join(hits, "\n")
}
