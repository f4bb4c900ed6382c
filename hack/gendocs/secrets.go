package main

import (
	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// The formats of the Secrets and ConfigMaps the annotations name. internal/config
// keeps no exported table of them (its parsers read the keys one by one), so they are
// documented here, as data; the tests of this package hold the table to the parsers: every
// example renders with config.Render, removing a required key fails naming it, and the IdP
// keys and provider types are exactly those the IdP parser accepts.

// objectKey is one key of a Secret or ConfigMap.
type objectKey struct {
	Key string
	// Alt are keys accepted in its place.
	Alt []string
	// Use says whether it is required, optional, or when it applies.
	Use string
	Doc string
	// Required keys of the example: the test removes each and expects Render to name it.
	Required bool
}

// objectFormat is the format of the Secrets (or ConfigMaps) one annotation names.
type objectFormat struct {
	Title      string
	Annotation string
	Kind       string // "Secret" or "ConfigMap"
	Intro      string
	Keys       []objectKey
	// Example is the data of a valid object (what `kubectl create secret generic` would hold).
	Example map[string]string
}

// oidcProviders are the provider types of Kratos v1.3.1 (its config schema's enum); the test
// checks them against the IdP parser.
var oidcProviders = []string{
	"github", "github-app", "gitlab", "generic", "google", "microsoft", "discord", "salesforce",
	"slack", "facebook", "auth0", "vk", "yandex", "apple", "spotify", "netid", "dingtalk",
	"patreon", "linkedin", "linkedin_v2", "lark", "x",
}

var objectFormats = []objectFormat{
	{
		Title: "Database", Annotation: inject.AnnotationDatabaseSecret, Kind: "Secret",
		Intro: "One of three forms, read in this order: key `dsn`; else key `uri` (the `<cluster>-app` Secret CloudNativePG creates works as is); " +
			"else the discrete keys, from which the DSN is composed with every value URL-escaped (a password may hold any character). " +
			"A whole DSN is never repeated in an error message: it carries the password.",
		Keys: []objectKey{
			{Key: "dsn", Use: "form 1", Doc: "A Postgres connection URL, used as is: `postgres://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=...` (schemes postgres, postgresql, cockroach). " +
				"It must parse as Kratos's driver (pgx) reads it, or the render refuses it: reserved characters in the password percent-encoded (`%` as `%25`, `/` as `%2F`, `?` as `%3F`, `#` as `%23`, `@` as `%40`), no password in the query."},
			{Key: "uri", Use: "form 2", Doc: "A Postgres connection URL, used as is (the key CloudNativePG writes); the same rules as dsn."},
			{Key: "host", Use: "form 3, required", Required: true, Doc: "Server host name or IP address (IPv6 with or without brackets); no port, user info or path."},
			{Key: "port", Use: "form 3, optional", Doc: "Server port; default 5432."},
			{Key: "username", Alt: []string{"user"}, Use: "form 3, required", Required: true, Doc: "User name."},
			{Key: "password", Use: "form 3, required", Required: true, Doc: "Password."},
			{Key: "dbname", Alt: []string{"database"}, Use: "form 3, required", Required: true, Doc: "Database name."},
			{Key: "sslmode", Use: "form 3, optional", Doc: "libpq sslmode: disable, allow, prefer, require, verify-ca or verify-full; unset: the driver's default."},
		},
		Example: map[string]string{"host": "kratos-db-rw.db.svc", "port": "5432", "username": "kratos", "password": "p@ss:w/rd?#", "dbname": "kratos", "sslmode": "require"},
	},
	{
		Title: "SMTP", Annotation: inject.AnnotationSMTPSecret, Kind: "Secret",
		Intro: "Key `uri` (a Kratos courier connection URI), else the fields of the smtp-integrator charm relation. Without an SMTP Secret the courier delivers nowhere.",
		Keys: []objectKey{
			{Key: "uri", Use: "instead of the fields", Doc: "`smtp://USER:PASSWORD@HOST:PORT/` (STARTTLS) or `smtps://...` (implicit TLS), credentials percent-encoded; used as is."},
			{Key: "host", Use: "required without uri", Required: true, Doc: "SMTP server host name."},
			{Key: "port", Use: "optional", Doc: "Port; default by transport_security: 465 for tls, 587 for starttls, 25 for none."},
			{Key: "user", Use: "optional", Doc: "User name; required when password is set."},
			{Key: "password", Use: "optional", Doc: "Password."},
			{Key: "transport_security", Use: "optional", Doc: "`none` (plain text), `tls` (implicit TLS) or `starttls`; default starttls."},
			{Key: "skip_ssl_verify", Use: "optional", Doc: "`true`: do not verify the server's certificate."},
			{Key: "from_address", Use: "optional", Doc: "Sender address, over the " + inject.AnnotationSender + " annotation's."},
			{Key: "from_name", Use: "optional", Doc: "Sender name, over the " + inject.AnnotationSender + " annotation's."},
		},
		Example: map[string]string{"host": "smtp.example.com", "port": "587", "user": "kratos", "password": "mail-password", "transport_security": "starttls", "from_address": "login@example.com", "from_name": "Example Login"},
	},
	{
		Title: "External identity provider", Annotation: inject.AnnotationIDPSecrets, Kind: "Secret",
		Intro: "One Secret per OIDC provider, with the fields Kratos accepts for a provider. Any other key is refused (a misspelt `client-id` would otherwise vanish silently). " +
			"The redirect URI to register at the provider is `<public-url>/self-service/methods/oidc/callback/<id>`; `kubectl kratos status` prints it.",
		Keys: []objectKey{
			{Key: "provider", Use: "required", Required: true, Doc: "Provider type: " + codeList(oidcProviders) + "."},
			{Key: "id", Use: "optional", Doc: "Provider id; default the provider type. It is part of the redirect URI and prefixes every linked account's identifier: choose it once. Two providers of one type need distinct ids. Letters, digits, `.`, `_`, `-`."},
			{Key: "client_id", Use: "required", Required: true, Doc: "OAuth2 client id issued by the provider."},
			{Key: "client_secret", Use: "required, but for apple", Required: true, Doc: "OAuth2 client secret; must not be set for apple."},
			{Key: "label", Use: "optional", Doc: "Label of the provider's button in the UI."},
			{Key: "issuer_url", Use: "required for generic", Doc: "Issuer URL (OIDC discovery)."},
			{Key: "auth_url", Use: "optional", Doc: "Authorization endpoint, an absolute http(s) URL."},
			{Key: "token_url", Use: "optional", Doc: "Token endpoint, an absolute http(s) URL."},
			{Key: "scope", Use: "optional", Doc: "Scopes, comma- or space-separated; default `user:email` for github, `openid email profile` for generic, google, gitlab, microsoft and auth0, `email` for apple."},
			{Key: "mapper", Use: "optional", Doc: "Jsonnet source of the claims mapper; default the built-in mapper of the provider type (github, microsoft, else a generic one mapping a verified email)."},
			{Key: "mapper_url", Use: "optional, not with mapper", Doc: "`file://`, `http(s)://` or `base64://` URL of the claims mapper."},
			{Key: "microsoft_tenant", Use: "required for microsoft only", Doc: "Entra ID tenant: common, organizations, consumers, or a tenant id."},
			{Key: "subject_source", Use: "optional", Doc: "`userinfo` or `me`."},
			{Key: "claims_source", Use: "optional", Doc: "`id_token` or `userinfo`."},
			{Key: "pkce", Use: "optional", Doc: "`auto`, `never` or `force`."},
			{Key: "requested_claims", Use: "optional", Doc: "JSON object of claims to request, e.g. `{\"id_token\":{\"email\":null}}`."},
			{Key: "additional_id_token_audiences", Use: "optional", Doc: "Further accepted ID token audiences, comma- or space-separated."},
			{Key: "organization_id", Use: "optional", Doc: "Kratos organization the provider belongs to."},
			{Key: "apple_team_id", Use: "required for apple only", Doc: "Apple Developer Team ID."},
			{Key: "apple_private_key_id", Use: "required for apple only", Doc: "Sign in with Apple key id."},
			{Key: "apple_private_key", Use: "required for apple only", Doc: "Sign in with Apple private key (PEM)."},
		},
		Example: map[string]string{"provider": "github", "client_id": "Iv1.0123456789abcdef", "client_secret": "github-client-secret", "label": "GitHub"},
	},
	{
		Title: "Kratos secrets", Annotation: inject.AnnotationSecretsSecret, Kind: "Secret",
		Intro: "Kratos's own secrets. Each key holds one value per line, newest first: Kratos signs and encrypts with the first and still accepts the others, " +
			"which is how a secret is rotated without logging everyone out. Without this Secret every pod draws random secrets (sessions do not survive a restart).",
		Keys: []objectKey{
			{Key: "default", Use: "required", Required: true, Doc: "Default secret(s), at least 16 characters each (`openssl rand -hex 32`)."},
			{Key: "cookie", Use: "optional", Doc: "Cookie secret(s), at least 16 characters each; default: the default secrets."},
			{Key: "cipher", Use: "required", Required: true, Doc: "Cipher secret(s), exactly 32 ASCII characters each (`openssl rand -hex 16`)."},
		},
		Example: map[string]string{"default": "0d6f1c8e9a2b4f7e0d6f1c8e9a2b4f7e\n5a1f2e3d4c5b6a798877665544332211", "cookie": "c00k1e-s3cret-0123456789abcdef", "cipher": "0123456789abcdef0123456789abcdef"},
	},
	{
		Title: "Identity schemas", Annotation: inject.AnnotationIdentitySchemas, Kind: "ConfigMap",
		Intro: "One key per identity schema. The schema named by " + inject.AnnotationDefaultSchema + " must be one of them; the built-in `admin` schema " +
			"(used by `kubectl kratos identity create-admin`) is added unless the ConfigMap has its own.",
		Keys: []objectKey{
			{Key: "<id>.json", Use: "one or more", Doc: "A Kratos identity schema (JSON) with id `<id>`: letters, digits, `.`, `_`, `-`."},
		},
		Example: map[string]string{"default.json": `{"$id": "https://schemas.example.com/default.json", "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
  "properties": {"traits": {"type": "object", "properties": {"email": {"type": "string", "format": "email",
    "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}, "recovery": {"via": "email"}}}}, "required": ["email"]}}}`},
	},
	{
		Title: "Config overlay", Annotation: inject.AnnotationConfig, Kind: "ConfigMap",
		Intro: "The escape hatch: Kratos configuration deep-merged last over the rendered one.",
		Keys: []objectKey{
			{Key: config.OverlayKey, Use: "required", Required: true, Doc: "A YAML mapping of Kratos configuration keys, e.g. `session: {lifespan: 72h}`."},
		},
		Example: map[string]string{config.OverlayKey: "session:\n  lifespan: 72h\n"},
	},
}
