package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a complete set of inputs (every Secret kind and both ConfigMaps) that renders; each
// error case breaks one thing. Secret values that must never leak carry "SENTINEL".
type fixture struct {
	spec       Spec
	secrets    map[string]map[string]string
	configmaps map[string]map[string]string
}

func validFixture() *fixture {
	return &fixture{
		spec: Spec{
			Database: DatabasePostgres, DatabaseSecret: "pg", SMTPSecret: "smtp",
			IDPSecrets: []string{"gh", "sso"}, SecretsSecret: "kratos-secrets",
			IdentitySchemas: "schemas", DefaultSchema: "default", ConfigOverlay: "overlay",
			PublicURL: "https://auth.example.com/", UIURL: "https://login.example.com",
			Features:   []string{FeatureLocalIDP, FeatureRecovery},
			SenderName: "Kratos", SenderAddress: "no-reply@example.com",
			Migrate: MigrateManual, Courier: CourierWatch, Sidecar: SidecarNative,
			Image: "oryd/kratos:v1.3.1", LogLevel: "info", Admin: AdminLocalhost,
		},
		secrets: map[string]map[string]string{
			"pg": {
				"host": "db", "port": "5432", "username": "kratos", "password": "PW-SENTINEL-db@:/?#%",
				"dbname": "kratos", "sslmode": "require",
			},
			"smtp": {
				"host": "smtp.example.com", "port": "587", "user": "USER-SENTINEL",
				"password": "PW-SENTINEL-smtp", "transport_security": "starttls",
			},
			"gh": {"provider": "github", "client_id": "ID-SENTINEL-gh", "client_secret": "CS-SENTINEL-gh"},
			"sso": {
				"provider": "generic", "id": "sso", "client_id": "ID-SENTINEL-sso",
				"client_secret": "CS-SENTINEL-sso", "issuer_url": "https://sso.example.com",
				"mapper": "local c = std.extVar('claims'); {identity: {traits: {email: c.email}}} // MAPPER-SENTINEL",
			},
			"kratos-secrets": {
				"default": "DEFAULT-SENTINEL-0123456789",
				"cookie":  "COOKIE-SENTINEL-0123456789",
				"cipher":  "CIPHER-SENTINEL-0123456789abcdef",
			},
		},
		configmaps: map[string]map[string]string{
			"schemas": {"default.json": string(BuiltinSchema(SchemaDefault))},
			"overlay": {"kratos.yaml": "log: {level: debug}\n"},
		},
	}
}

// write lays the fixture out as mounted volumes under a temp dir and returns it.
func (f *fixture) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for kind, objs := range map[string]map[string]map[string]string{"secrets": f.secrets, "configmaps": f.configmaps} {
		for name, keys := range objs {
			d := filepath.Join(dir, kind, name)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for k, v := range keys {
				if err := os.WriteFile(filepath.Join(d, k), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return dir
}

// sensitive lists the fixture's Secret values that must never appear in an error.
func (f *fixture) sensitive() []string {
	var out []string
	for _, keys := range f.secrets {
		for _, v := range keys {
			if strings.Contains(v, "SENTINEL") {
				out = append(out, v)
			}
		}
	}
	return out
}

func TestValidFixtureRenders(t *testing.T) {
	f := validFixture()
	res, err := Render(&f.spec, RenderOptions{InputDir: f.write(t), Rand: &fixedRand{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings with every input given: %q", res.Warnings)
	}
	if !strings.Contains(string(res.Files[ConfigFile]), "level: debug") {
		t.Error("overlay not applied")
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *fixture)
		bad    string // the planted bad value, which must not be echoed either
		// the expected error: InputError fields (kind "" means not an InputError)
		kind, obj, key string
		// substrings the message must contain (the fix)
		want []string
	}{
		// Database.
		{name: "db password missing", break_: func(f *fixture) { delete(f.secrets["pg"], "password") },
			kind: "secret", obj: "pg", key: "password", want: []string{"missing", `use key "dsn"`}},
		{name: "db no connection at all", break_: func(f *fixture) { f.secrets["pg"] = map[string]string{"password": "PW-SENTINEL"} },
			kind: "secret", obj: "pg", key: "host", want: []string{`key "uri"`}},
		{name: "db bad port", break_: func(f *fixture) { f.secrets["pg"]["port"] = "54x32" }, bad: "54x32",
			kind: "secret", obj: "pg", key: "port", want: []string{"port number"}},
		{name: "db bad sslmode", break_: func(f *fixture) { f.secrets["pg"]["sslmode"] = "sometimes" }, bad: "sometimes",
			kind: "secret", obj: "pg", key: "sslmode", want: []string{"verify-full"}},
		{name: "db dbname missing", break_: func(f *fixture) { delete(f.secrets["pg"], "dbname") },
			kind: "secret", obj: "pg", key: "dbname", want: []string{"database"}},
		{name: "db uri unparsable", break_: func(f *fixture) { f.secrets["pg"]["uri"] = "postgresql://app:SENTINEL%zz@[::1" },
			bad: "postgresql://app:SENTINEL%zz@[::1", kind: "secret", obj: "pg", key: "uri", want: []string{"not a valid URL"}},
		{name: "db dsn sqlite", break_: func(f *fixture) { f.secrets["pg"]["dsn"] = "sqlite:///x.db?pw=SENTINEL" },
			bad: "sqlite:///x.db?pw=SENTINEL", kind: "secret", obj: "pg", key: "dsn", want: []string{"not Postgres", "sqlite"}},
		{name: "db dsn empty", break_: func(f *fixture) { f.secrets["pg"]["dsn"] = "\n" },
			kind: "secret", obj: "pg", key: "dsn", want: []string{"empty"}},
		{name: "db dsn two lines", break_: func(f *fixture) { f.secrets["pg"]["dsn"] = "postgres://a:SENTINEL@h/d\nx" },
			bad: "postgres://a:SENTINEL@h/d", kind: "secret", obj: "pg", key: "dsn", want: []string{"line break"}},
		{name: "db dsn unescaped percent", break_: func(f *fixture) { f.secrets["pg"]["dsn"] = "postgres://kratos:N0t%Shared!SENTINEL@db:5432/kratos" },
			bad: "N0t%Shared!", kind: "secret", obj: "pg", key: "dsn", want: []string{"Kratos can parse", "% as %25"}},
		{name: "db dsn password half in path", break_: func(f *fixture) { f.secrets["pg"]["dsn"] = "postgres://kratos:5432/SENTINEL@db/kratos" },
			bad: "5432/SENTINEL", kind: "secret", obj: "pg", key: "dsn", want: []string{"percent-encoded"}},
		{name: "db host with slash", break_: func(f *fixture) { f.secrets["pg"]["host"] = "db/SENTINEL" },
			bad: "db/SENTINEL", kind: "secret", obj: "pg", key: "host", want: []string{"host name or IP address"}},
		{name: "db host with port", break_: func(f *fixture) { f.secrets["pg"]["host"] = "db:5433" },
			bad: "db:5433", kind: "secret", obj: "pg", key: "host", want: []string{`key "port"`}},
		{name: "db secret not mounted", break_: func(f *fixture) { delete(f.secrets, "pg") },
			kind: "secret", obj: "pg", key: "", want: []string{"not mounted"}},

		// SMTP.
		{name: "smtp bad transport", break_: func(f *fixture) { f.secrets["smtp"]["transport_security"] = "ssl" }, bad: "ssl",
			kind: "secret", obj: "smtp", key: "transport_security", want: []string{`"starttls"`}},
		{name: "smtp credentials without TLS", break_: func(f *fixture) { f.secrets["smtp"]["transport_security"] = "none" }, bad: "PW-SENTINEL-smtp",
			kind: "secret", obj: "smtp", key: "transport_security", want: []string{"unencrypted connection", `"starttls"`}},
		{name: "smtp bad skip_ssl_verify", break_: func(f *fixture) { f.secrets["smtp"]["skip_ssl_verify"] = "maybe" }, bad: "maybe",
			kind: "secret", obj: "smtp", key: "skip_ssl_verify", want: []string{"boolean"}},
		{name: "smtp uri not smtp", break_: func(f *fixture) { f.secrets["smtp"]["uri"] = "http://u:SENTINEL@mail/" },
			bad: "http://u:SENTINEL@mail/", kind: "secret", obj: "smtp", key: "uri", want: []string{"smtps://"}},
		{name: "smtp uri unparsable", break_: func(f *fixture) { f.secrets["smtp"]["uri"] = "smtp://u:SENTINEL%zz@mail/" },
			bad: "smtp://u:SENTINEL%zz@mail/", kind: "secret", obj: "smtp", key: "uri", want: []string{"percent-encoded"}},
		{name: "smtp password without user", break_: func(f *fixture) { delete(f.secrets["smtp"], "user") },
			kind: "secret", obj: "smtp", key: "user", want: []string{"password is set"}},
		{name: "smtp host missing", break_: func(f *fixture) { delete(f.secrets["smtp"], "host") },
			kind: "secret", obj: "smtp", key: "host", want: []string{`key "uri"`}},
		{name: "smtp bad from_address", break_: func(f *fixture) { f.secrets["smtp"]["from_address"] = "Kratos <k@x>" }, bad: "Kratos <k@x>",
			kind: "secret", obj: "smtp", key: "from_address", want: []string{"email address"}},
		{name: "smtp bad port", break_: func(f *fixture) { f.secrets["smtp"]["port"] = "99999" }, bad: "99999",
			kind: "secret", obj: "smtp", key: "port", want: []string{"port number"}},

		// Kratos secrets.
		{name: "short cipher", break_: func(f *fixture) { f.secrets["kratos-secrets"]["cipher"] = "CIPHER-SENTINEL-short\n" },
			bad: "CIPHER-SENTINEL-short", kind: "secret", obj: "kratos-secrets", key: "cipher", want: []string{"exactly 32", "openssl rand -hex 16"}},
		{name: "long rotated cipher", break_: func(f *fixture) {
			f.secrets["kratos-secrets"]["cipher"] = "CIPHER-SENTINEL-0123456789abcdef\nCIPHER-SENTINEL-0123456789abcdef0\n"
		}, kind: "secret", obj: "kratos-secrets", key: "cipher", want: []string{"value 2", "exactly 32"}},
		{name: "non-ASCII cipher", break_: func(f *fixture) { f.secrets["kratos-secrets"]["cipher"] = "CIPHER-SENTINEL-0123456789abcdé" },
			bad: "CIPHER-SENTINEL-0123456789abcdé", kind: "secret", obj: "kratos-secrets", key: "cipher", want: []string{"ASCII"}},
		{name: "cipher missing", break_: func(f *fixture) { delete(f.secrets["kratos-secrets"], "cipher") },
			kind: "secret", obj: "kratos-secrets", key: "cipher", want: []string{"missing"}},
		{name: "short default", break_: func(f *fixture) { f.secrets["kratos-secrets"]["default"] = "SENTINEL-short" },
			bad: "SENTINEL-short", kind: "secret", obj: "kratos-secrets", key: "default", want: []string{"at least 16"}},
		{name: "repeated cookie", break_: func(f *fixture) {
			f.secrets["kratos-secrets"]["cookie"] = "COOKIE-SENTINEL-0123456789\nCOOKIE-SENTINEL-0123456789\n"
		}, kind: "secret", obj: "kratos-secrets", key: "cookie", want: []string{"repeats value 1"}},

		// External IdPs.
		{name: "idp client_secret missing", break_: func(f *fixture) { delete(f.secrets["gh"], "client_secret") },
			kind: "secret", obj: "gh", key: "client_secret", want: []string{"missing"}},
		{name: "idp provider missing", break_: func(f *fixture) { delete(f.secrets["gh"], "provider") },
			kind: "secret", obj: "gh", key: "provider", want: []string{"github"}},
		{name: "idp unknown provider", break_: func(f *fixture) { f.secrets["gh"]["provider"] = "githubb" }, bad: "githubb",
			kind: "secret", obj: "gh", key: "provider", want: []string{"one of"}},
		{name: "idp generic without issuer", break_: func(f *fixture) { delete(f.secrets["sso"], "issuer_url") },
			kind: "secret", obj: "sso", key: "issuer_url", want: []string{"missing"}},
		{name: "idp bad issuer URL", break_: func(f *fixture) { f.secrets["sso"]["issuer_url"] = "sso.example.com/realm" },
			bad: "sso.example.com/realm", kind: "secret", obj: "sso", key: "issuer_url", want: []string{"absolute http(s) URL"}},
		{name: "idp bad requested_claims", break_: func(f *fixture) { f.secrets["sso"]["requested_claims"] = "{\"id_token\": {SENTINEL}}" },
			kind: "secret", obj: "sso", key: "requested_claims", want: []string{"not valid JSON", "line 1"}},
		{name: "idp requested_claims not object", break_: func(f *fixture) { f.secrets["sso"]["requested_claims"] = "[\"SENTINEL\"]" },
			kind: "secret", obj: "sso", key: "requested_claims", want: []string{"JSON object"}},
		{name: "idp misspelt key", break_: func(f *fixture) { f.secrets["gh"]["Client-Secret"] = "CS-SENTINEL-x" },
			kind: "secret", obj: "gh", key: "Client-Secret", want: []string{`did you mean "client_secret"`}},
		{name: "idp unknown key", break_: func(f *fixture) { f.secrets["gh"]["colour"] = "blue" }, bad: "blue",
			kind: "secret", obj: "gh", key: "colour", want: []string{"client_id"}},
		{name: "idp mapper and mapper_url", break_: func(f *fixture) { f.secrets["sso"]["mapper_url"] = "https://x.example.com/m.jsonnet" },
			kind: "secret", obj: "sso", key: "mapper", want: []string{"only one"}},
		{name: "idp bad mapper_url", break_: func(f *fixture) {
			delete(f.secrets["sso"], "mapper")
			f.secrets["sso"]["mapper_url"] = "ftp://x/m.jsonnet"
		}, bad: "ftp://x/m.jsonnet", kind: "secret", obj: "sso", key: "mapper_url", want: []string{"base64://"}},
		{name: "idp unparsable auth_url with credentials", break_: func(f *fixture) { f.secrets["sso"]["auth_url"] = "https://u:SENTINEL%zz@sso.example.com/auth" },
			bad: "https://u:SENTINEL%zz@sso.example.com/auth", kind: "secret", obj: "sso", key: "auth_url", want: []string{"absolute http(s) URL"}},
		{name: "idp token_url with credentials", break_: func(f *fixture) { f.secrets["sso"]["token_url"] = "ftp://u:SENTINEL@sso.example.com/token" },
			bad: "ftp://u:SENTINEL@sso.example.com/token", kind: "secret", obj: "sso", key: "token_url", want: []string{"absolute http(s) URL"}},
		{name: "idp mapper_url with credentials", break_: func(f *fixture) {
			delete(f.secrets["sso"], "mapper")
			f.secrets["sso"]["mapper_url"] = "ftp://u:SENTINEL@x/m.jsonnet"
		}, bad: "ftp://u:SENTINEL@x/m.jsonnet", kind: "secret", obj: "sso", key: "mapper_url", want: []string{"base64://"}},
		{name: "idp duplicate id", break_: func(f *fixture) { f.secrets["sso"]["id"] = "github" },
			kind: "secret", obj: "sso", key: "id", want: []string{`secret "gh"`, "distinct id"}},
		{name: "idp bad id", break_: func(f *fixture) { f.secrets["sso"]["id"] = "a/b" }, bad: "a/b",
			kind: "secret", obj: "sso", key: "id", want: []string{"callback URL"}},
		{name: "idp apple with client_secret", break_: func(f *fixture) {
			f.secrets["gh"] = map[string]string{"provider": "apple", "client_id": "c", "client_secret": "CS-SENTINEL",
				"apple_team_id": "T", "apple_private_key_id": "K", "apple_private_key": "PK-SENTINEL"}
		}, kind: "secret", obj: "gh", key: "client_secret", want: []string{"apple_private_key"}},
		{name: "idp apple key missing", break_: func(f *fixture) {
			f.secrets["gh"] = map[string]string{"provider": "apple", "client_id": "c", "apple_team_id": "T", "apple_private_key_id": "K"}
		}, kind: "secret", obj: "gh", key: "apple_private_key", want: []string{"missing"}},
		{name: "idp apple key on github", break_: func(f *fixture) { f.secrets["gh"]["apple_team_id"] = "T" },
			kind: "secret", obj: "gh", key: "apple_team_id", want: []string{"only for provider apple"}},
		{name: "idp microsoft without tenant", break_: func(f *fixture) { f.secrets["gh"]["provider"] = "microsoft" },
			kind: "secret", obj: "gh", key: "microsoft_tenant", want: []string{"missing"}},
		{name: "idp tenant on github", break_: func(f *fixture) { f.secrets["gh"]["microsoft_tenant"] = "common" },
			kind: "secret", obj: "gh", key: "microsoft_tenant", want: []string{"only for provider microsoft"}},
		{name: "idp bad pkce", break_: func(f *fixture) { f.secrets["gh"]["pkce"] = "always" }, bad: "always",
			kind: "secret", obj: "gh", key: "pkce", want: []string{"auto, never, force"}},
		{name: "idp secret not mounted", break_: func(f *fixture) { delete(f.secrets, "sso") },
			kind: "secret", obj: "sso", key: "", want: []string{"not mounted"}},

		// Identity schemas.
		{name: "unknown default schema", break_: func(f *fixture) { f.spec.DefaultSchema = "employee" },
			kind: "configmap", obj: "schemas", key: "employee.json", want: []string{"default schema", "default"}},
		{name: "unknown built-in schema", break_: func(f *fixture) { f.spec.IdentitySchemas = ""; f.spec.DefaultSchema = "employee" },
			want: []string{`default schema "employee" is not built in`, "identity-schemas"}},
		{name: "schema key without .json", break_: func(f *fixture) { f.configmaps["schemas"]["employee.yaml"] = "{}" },
			kind: "configmap", obj: "schemas", key: "employee.yaml", want: []string{"<id>.json"}},
		{name: "schema bad JSON", break_: func(f *fixture) { f.configmaps["schemas"]["x.json"] = "{\n  \"type\": object\n}" },
			kind: "configmap", obj: "schemas", key: "x.json", want: []string{"line 2"}},
		{name: "schemas ConfigMap empty", break_: func(f *fixture) { f.configmaps["schemas"] = map[string]string{} },
			kind: "configmap", obj: "schemas", key: "", want: []string{"has no keys", "exists"}},

		// Config overlay.
		{name: "overlay bad YAML", break_: func(f *fixture) { f.configmaps["overlay"]["kratos.yaml"] = "log:\n  level: [debug\n" },
			kind: "configmap", obj: "overlay", key: "kratos.yaml", want: []string{"not valid YAML"}},
		{name: "overlay not a mapping", break_: func(f *fixture) { f.configmaps["overlay"]["kratos.yaml"] = "- log\n" },
			kind: "configmap", obj: "overlay", key: "kratos.yaml", want: []string{"mapping"}},
		{name: "overlay key missing", break_: func(f *fixture) { f.configmaps["overlay"] = map[string]string{"config.yaml": "x: 1"} },
			kind: "configmap", obj: "overlay", key: "kratos.yaml", want: []string{"missing"}},

		// Spec (normally caught at admission).
		{name: "spec bad public URL", break_: func(f *fixture) { f.spec.PublicURL = "auth.example.com" },
			want: []string{"spec: publicURL", "absolute"}},
		{name: "spec public URL with credentials", break_: func(f *fixture) { f.spec.PublicURL = "https://u:SENTINEL@auth.example.com/" },
			want: []string{"spec: publicURL", "u:xxxxx@auth.example.com", "credentials"}},
		{name: "spec hydra URL with unparsable credentials", break_: func(f *fixture) { f.spec.HydraAdminURL = "https://u:SENTINEL%zz@hydra:4445/" },
			want: []string{"spec: hydraAdminURL", "xxxxx@hydra:4445"}},
		{name: "spec return URL with long credentials", break_: func(f *fixture) {
			f.spec.AllowedReturnURLs = []string{"https://u:" + strings.Repeat("SENTINEL", 20) + "@app.example.com/"}
		}, want: []string{"spec: allowedReturnURLs", "credentials"}},
		{name: "spec CORS origin with credentials", break_: func(f *fixture) { f.spec.CORSOrigins = []string{"https://u:SENTINEL@app.example.com/x"} },
			want: []string{"spec: corsOrigins", "u:xxxxx@app.example.com"}},
		{name: "spec unknown feature", break_: func(f *fixture) { f.spec.Features = append(f.spec.Features, "sso") },
			want: []string{`unknown feature "sso"`}},
		{name: "spec bad sender", break_: func(f *fixture) { f.spec.SenderAddress = "nobody" },
			want: []string{"senderAddress"}},
		{name: "spec postgres without secret", break_: func(f *fixture) { f.spec.DatabaseSecret = "" },
			want: []string{"database-secret"}},
		{name: "spec bad log level", break_: func(f *fixture) { f.spec.LogLevel = "warn" },
			want: []string{"warning"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := validFixture()
			tc.break_(f)
			res, err := Render(&f.spec, RenderOptions{InputDir: f.write(t), Rand: &fixedRand{}})
			if err == nil {
				t.Fatalf("rendered without error:\n%s", res.Files[ConfigFile])
			}
			msg := err.Error()
			t.Log(msg)
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("message is not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q", w)
				}
			}
			if strings.Contains(msg, "SENTINEL") {
				t.Errorf("message leaks a secret value: %q", msg)
			}
			for _, v := range append(f.sensitive(), tc.bad) {
				if v != "" && strings.Contains(msg, v) {
					t.Errorf("message holds the value %q", v)
				}
			}
			var ie *InputError
			if tc.kind == "" {
				if errors.As(err, &ie) {
					t.Errorf("unexpected InputError %+v", ie)
				}
				return
			}
			if !errors.As(err, &ie) {
				t.Fatalf("not an *InputError: %T", err)
			}
			if ie.Kind != tc.kind || ie.Name != tc.obj || ie.Key != tc.key {
				t.Errorf("InputError names %s %q key %q, want %s %q key %q", ie.Kind, ie.Name, ie.Key, tc.kind, tc.obj, tc.key)
			}
			want := tc.kind + ` "` + tc.obj + `"`
			if tc.key != "" {
				want += ` key "` + tc.key + `"`
			}
			if !strings.Contains(msg, want) {
				t.Errorf("message does not name %s", want)
			}
		})
	}
}
