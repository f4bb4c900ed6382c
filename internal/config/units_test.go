package config

import (
	"crypto/rand"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// secretSource writes keys as a mounted Secret named name and opens it.
func secretSource(t *testing.T, name string, keys map[string]string) *source {
	t.Helper()
	f := &fixture{secrets: map[string]map[string]string{name: keys}}
	s, err := openSecret(f.write(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSMTPURIVariants(t *testing.T) {
	base := map[string]string{"host": "mail.example.com", "user": "me@example.com", "password": "p@ss:w/rd?#%"}
	const creds = "me%40example.com:p%40ss%3Aw%2Frd%3F%23%25@"
	for _, tc := range []struct {
		extra map[string]string
		want  string
	}{
		{map[string]string{"transport_security": "starttls", "port": "587"}, "smtp://" + creds + "mail.example.com:587/"},
		{map[string]string{"transport_security": "starttls", "skip_ssl_verify": "true"}, "smtp://" + creds + "mail.example.com:587/?skip_ssl_verify=true"},
		{map[string]string{}, "smtp://" + creds + "mail.example.com:587/"}, // Kratos's default: STARTTLS
		{map[string]string{"transport_security": "tls"}, "smtps://" + creds + "mail.example.com:465/"},
		{map[string]string{"transport_security": "tls", "skip_ssl_verify": "True", "port": "2465"}, "smtps://" + creds + "mail.example.com:2465/?skip_ssl_verify=true"},
		// Credentials without TLS only to the loopback host (Kratos refuses them elsewhere).
		{map[string]string{"transport_security": "none", "port": "1025", "host": "127.0.0.1"}, "smtp://" + creds + "127.0.0.1:1025/?disable_starttls=true"},
		{map[string]string{"transport_security": "none", "skip_ssl_verify": "true", "host": "localhost"}, "smtp://" + creds + "localhost:25/?disable_starttls=true"},
		{map[string]string{"transport_security": "tls", "skip_ssl_verify": "false"}, "smtps://" + creds + "mail.example.com:465/"},
	} {
		keys := map[string]string{}
		for k, v := range base {
			keys[k] = v
		}
		for k, v := range tc.extra {
			keys[k] = v
		}
		got, err := smtpURI(secretSource(t, "smtp", keys))
		if err != nil {
			t.Fatalf("%v: %v", tc.extra, err)
		}
		if got != tc.want {
			t.Errorf("%v:\n got %s\nwant %s", tc.extra, got, tc.want)
		}
		// What Kratos reads back (courier/smtp.go) is what the Secret said.
		u, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if pw, _ := u.User.Password(); u.User.Username() != base["user"] || pw != base["password"] {
			t.Errorf("credentials do not round-trip: %q", u.User)
		}
	}

	// Without credentials: no userinfo at all.
	got, err := smtpURI(secretSource(t, "smtp", map[string]string{"host": "127.0.0.1", "port": "1025", "transport_security": "none"}))
	if err != nil || got != "smtp://127.0.0.1:1025/?disable_starttls=true" {
		t.Errorf("got %q, %v", got, err)
	}
	// Key uri wins and is kept as is.
	const uri = "smtps://u:p%40w@smtp.example.com:465/?server_name=mail.example.com"
	got, err = smtpURI(secretSource(t, "smtp", map[string]string{"uri": uri + "\n", "host": "ignored"}))
	if err != nil || got != uri {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestPostgresDSNVariants(t *testing.T) {
	// Discrete keys with every character that matters in a URL round-trip through the DSN as the
	// driver (pgconn, via url.Parse) reads it.
	user, password, db := "kratos:us@r/x", "p@ss:w/rd?#%41 &x=+", "kratos/db?#% x"
	for _, keys := range []map[string]string{
		{"host": "db.example.com", "port": "6432", "username": user, "password": password, "dbname": db, "sslmode": "verify-full"},
		{"host": "db.example.com", "port": "6432", "user": user, "password": password + "\n", "database": db, "sslmode": "verify-full"},
	} {
		dsn, err := postgresDSN(secretSource(t, "pg", keys))
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		got := []string{u.Scheme, u.User.Username(), pw, u.Host, strings.TrimPrefix(u.Path, "/"), u.Query().Get("sslmode")}
		want := []string{"postgres", user, password, "db.example.com:6432", db, "verify-full"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DSN %s does not round-trip (-want +got):\n%s", dsn, diff)
		}
	}

	// IPv6 host, default port, no sslmode.
	dsn, err := postgresDSN(secretSource(t, "pg", map[string]string{"host": "::1", "username": "u", "password": "p", "dbname": "d"}))
	if err != nil || dsn != "postgres://u:p@[::1]:5432/d" {
		t.Errorf("got %q, %v", dsn, err)
	}

	// A CloudNativePG <cluster>-app Secret: uri preferred over the discrete keys, kept as is.
	cnpg := map[string]string{
		"uri":      "postgresql://app:s3cr%2Ft@c-rw.ns:5432/app",
		"host":     "c-rw",
		"port":     "5432",
		"user":     "app",
		"username": "app",
		"password": "s3cr/t",
		"dbname":   "app",
		"jdbc-uri": "jdbc:postgresql://c-rw.ns:5432/app?password=s3cr%2Ft&user=app",
		"pgpass":   "c-rw:5432:app:app:s3cr/t\n",
	}
	if dsn, err := postgresDSN(secretSource(t, "pg", cnpg)); err != nil || dsn != cnpg["uri"] {
		t.Errorf("CNPG: got %q, %v", dsn, err)
	}
	// dsn beats uri.
	cnpg["dsn"] = "postgres://x:y@h:1/d?sslmode=disable"
	if dsn, err := postgresDSN(secretSource(t, "pg", cnpg)); err != nil || dsn != cnpg["dsn"] {
		t.Errorf("dsn: got %q, %v", dsn, err)
	}
}

func TestSQLiteDSNUsesDataDir(t *testing.T) {
	dir := t.TempDir()
	f := validFixture()
	f.spec.Database, f.spec.DatabaseSecret = DatabaseSQLite, ""
	res, err := Render(&f.spec, RenderOptions{InputDir: f.write(t), DataDir: dir, ConfigDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		DSN      string `json:"dsn"`
		Identity struct {
			Schemas []IdentitySchema `json:"schemas"`
		} `json:"identity"`
	}
	if err := yaml.Unmarshal(res.Files[ConfigFile], &cfg); err != nil {
		t.Fatal(err)
	}
	if want := "sqlite://" + dir + "/db.sqlite?_fk=true&mode=rwc"; cfg.DSN != want {
		t.Errorf("dsn %q, want %q", cfg.DSN, want)
	}
	for _, s := range cfg.Identity.Schemas {
		if !strings.HasPrefix(s.URL, "file://"+dir+"/schemas/") {
			t.Errorf("schema URL %q is not under the config dir", s.URL)
		}
	}
}

func TestRandomSecrets(t *testing.T) {
	f := validFixture()
	f.spec.SecretsSecret = ""
	in := f.write(t)
	render := func() Secrets {
		res, err := Render(&f.spec, RenderOptions{InputDir: in, Rand: rand.Reader})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "secrets-secret") {
			t.Errorf("warnings %q, want one about secrets-secret", res.Warnings)
		}
		var cfg struct {
			Secrets Secrets `json:"secrets"`
		}
		if err := yaml.Unmarshal(res.Files[ConfigFile], &cfg); err != nil {
			t.Fatal(err)
		}
		for _, w := range res.Warnings {
			for _, v := range [][]string{cfg.Secrets.Default, cfg.Secrets.Cookie, cfg.Secrets.Cipher} {
				if strings.Contains(w, v[0]) {
					t.Error("a warning holds a secret")
				}
			}
		}
		return cfg.Secrets
	}
	a, b := render(), render()
	if len(a.Cipher) != 1 || len(a.Cipher[0]) != cipherLen || len(a.Default[0]) < minSecretLen || len(a.Cookie[0]) < minSecretLen {
		t.Errorf("bad random secrets: %d cipher chars", len(a.Cipher[0]))
	}
	if a.Cipher[0] == b.Cipher[0] || a.Default[0] == b.Default[0] || a.Cookie[0] == b.Cookie[0] || a.Default[0] == a.Cookie[0] {
		t.Error("random secrets repeat")
	}
}

func TestSecretRotationAndOptionalCookie(t *testing.T) {
	s := secretSource(t, "ks", map[string]string{
		"default": "\nnew-default-0123456789\r\nold-default-0123456789\n\n",
		"cipher":  "cipher-secret-0123456789abcdef01",
	})
	got, err := secretValues(s, "default", true)
	if err != nil || !cmp.Equal(got, []string{"new-default-0123456789", "old-default-0123456789"}) {
		t.Errorf("default: %q, %v", got, err)
	}
	if got, err := secretValues(s, "cookie", false); err != nil || got != nil {
		t.Errorf("absent optional cookie: %q, %v", got, err)
	}
}

func TestDeepMerge(t *testing.T) {
	base := map[string]any{
		"a": map[string]any{"b": 1, "c": []any{1, 2}, "d": map[string]any{"e": "x"}},
		"f": "keep",
		"g": "drop",
	}
	over := map[string]any{
		"a": map[string]any{"b": 2, "c": []any{3}, "d": map[string]any{"n": true}},
		"g": nil,
		"h": map[string]any{"i": nil, "j": 1},
		"f": map[string]any{"now": "a map"},
	}
	want := map[string]any{
		"a": map[string]any{"b": 2, "c": []any{3}, "d": map[string]any{"e": "x", "n": true}},
		"f": map[string]any{"now": "a map"},
		"h": map[string]any{"j": 1},
	}
	if diff := cmp.Diff(want, deepMerge(base, over)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestOverlayKeepsIntegers(t *testing.T) {
	f := validFixture()
	f.configmaps["overlay"]["kratos.yaml"] = "serve: {public: {port: 8433}}\nhashers: {bcrypt: {cost: 4}}\n"
	res, err := Render(&f.spec, RenderOptions{InputDir: f.write(t), Rand: &fixedRand{}})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Files[ConfigFile])
	for _, want := range []string{"port: 8433", "cost: 4", "port: 4434"} {
		if !strings.Contains(out, want) {
			t.Errorf("kratos.yaml lacks %q", want)
		}
	}
}

func TestWriteFiles(t *testing.T) {
	f := validFixture()
	res, err := Render(&f.spec, RenderOptions{InputDir: f.write(t), Rand: &fixedRand{}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	for range 2 { // a restarted init container writes over its earlier output
		if err := res.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
	}
	got := readTree(t, dir)
	want := map[string]string{}
	for k, v := range res.Files {
		want[k] = string(v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("written files differ (-want +got):\n%s", diff)
	}
	st, err := os.Stat(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		t.Errorf("kratos.yaml (holding secrets) is world-accessible: %v", st.Mode())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".render-") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}

	bad := &Result{Files: map[string][]byte{"../escape": nil}}
	if err := bad.WriteFiles(dir); err == nil {
		t.Error("a path outside the config dir was written")
	}
}

// TestKubeletLayout: keys are read through the ..data symlinks and the kubelet's dot entries
// are never taken for keys (the golden cases also hold such mounts).
func TestKubeletLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets", "s")
	ts := filepath.Join(dir, "..2026_01_01_00_00_00.1")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "k"), []byte("v\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"..2026_01_01_00_00_00.1", "..data"}, {"..data/k", "k"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	s, err := openSecret(filepath.Dir(filepath.Dir(dir)), "s")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.keys()
	if err != nil || !cmp.Equal(keys, []string{"k"}) {
		t.Errorf("keys %q, %v", keys, err)
	}
	if v, ok, err := s.text("k"); v != "v" || !ok || err != nil {
		t.Errorf("k = %q, %v, %v", v, ok, err)
	}
	if _, ok, _ := s.text("..data"); ok {
		t.Error("..data read as a key")
	}
}

func TestProviderIDAndCallback(t *testing.T) {
	for _, tc := range []struct {
		data map[string][]byte
		want string
	}{
		{map[string][]byte{"provider": []byte("github\n")}, "github"},
		{map[string][]byte{"provider": []byte("generic"), "id": []byte("corp\n")}, "corp"},
	} {
		if got := ProviderID(tc.data); got != tc.want {
			t.Errorf("ProviderID = %q, want %q", got, tc.want)
		}
	}
	if got := CallbackURL("https://auth.example.com/", "corp"); got != "https://auth.example.com/self-service/methods/oidc/callback/corp" {
		t.Errorf("CallbackURL = %q", got)
	}
}
