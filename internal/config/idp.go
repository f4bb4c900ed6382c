package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
)

// idpKeys are the keys an IdP Secret may hold: every provider field of Kratos v1.3.1
// (embedx/config.schema.json, definitions.selfServiceOIDCProvider; the charm's allow-list) plus
// `mapper`, the jsonnet source of the claims mapper. Any other key is refused, because a
// misspelt key (client-id) would otherwise vanish silently.
var idpKeys = []string{
	"id", "provider", "label", "client_id", "client_secret", "issuer_url", "auth_url", "token_url",
	"mapper_url", "mapper", "scope", "microsoft_tenant", "subject_source", "apple_team_id",
	"apple_private_key_id", "apple_private_key", "requested_claims", "organization_id",
	"additional_id_token_audiences", "claims_source", "pkce",
}

// oidcProviders is the provider enum of Kratos v1.3.1.
var oidcProviders = []string{
	"github", "github-app", "gitlab", "generic", "google", "microsoft", "discord", "salesforce",
	"slack", "facebook", "auth0", "vk", "yandex", "apple", "spotify", "netid", "dingtalk",
	"patreon", "linkedin", "linkedin_v2", "lark", "x",
}

// defaultScopes are rendered when the Secret has no scope key, so that the built-in mappers get
// the email they map: GitHub sends the (verified) email only with user:email, OIDC providers
// only with the email scope.
var defaultScopes = map[string][]string{
	"github":    {"user:email"},
	"generic":   {"openid", "email", "profile"},
	"google":    {"openid", "email", "profile"},
	"gitlab":    {"openid", "email", "profile"},
	"microsoft": {"openid", "email", "profile"},
	"auth0":     {"openid", "email", "profile"},
	"apple":     {"email"},
}

// builtinMappers names the built-in mapper of a provider; every other provider gets "generic"
// (map the email only when the provider reports it verified).
var builtinMappers = map[string]string{
	"github":     "github",
	"github-app": "github",
	"microsoft":  "microsoft",
}

// builtinMapper returns the embedded claims mapper for provider.
func builtinMapper(provider string) []byte {
	name, ok := builtinMappers[provider]
	if !ok {
		name = "generic"
	}
	b, err := builtin.ReadFile("builtin/mappers/" + name + ".jsonnet")
	if err != nil {
		panic(fmt.Sprintf("built-in mapper %s: %v", name, err)) // embedded at build time
	}
	return b
}

// maxProviderIDLen bounds a provider id: it is part of every callback URL and names a file.
const maxProviderIDLen = 64

// providerIDPattern keeps ids usable in the callback URL path and as file names.
var providerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// identityProviders renders the external IdPs, one Secret each, in the spec's
// order. A provider's id defaults to its provider type (a lone GitHub provider is "github", its
// callback .../self-service/methods/oidc/callback/github); two providers of one type need an
// explicit id, because the id is also the prefix of every linked account's identifier and must
// not change later. Each provider's claims mapper is written to mappers/<id>.jsonnet: the Secret's
// `mapper` source, else the built-in one for its type, unless the Secret gives mapper_url.
//
// Mappers are files referenced by file:// rather than inlined as base64://, like the identity
// schemas: `kubectl exec ... cat` shows them as written, golden files diff line by line, and
// kratos.yaml stays readable. The price: the Kratos container must mount the config emptyDir at
// the path the render container wrote it to (RenderOptions.ConfigDir, --out).
func (r *renderer) identityProviders() ([]OIDCProvider, error) {
	var out []OIDCProvider
	owner := map[string]string{} // provider id -> Secret name
	for _, name := range r.spec.IDPSecrets {
		s, err := r.openSecret(name)
		if err != nil {
			return nil, err
		}
		p, mapper, err := readProvider(s)
		if err != nil {
			return nil, err
		}
		if other, dup := owner[p.ID]; dup {
			return nil, s.failf("id", "provider id %q is already used by secret %q; set a distinct id in one of them", p.ID, other)
		}
		owner[p.ID] = name
		if p.MapperURL == "" {
			if mapper == nil {
				mapper = builtinMapper(p.Provider)
			}
			f := path.Join("mappers", p.ID+".jsonnet")
			r.files[f] = mapper
			p.MapperURL = r.fileURL(f)
		}
		out = append(out, p)
	}
	return out, nil
}

// providerID is the one rule for a provider's id: key id when present, else the provider type.
func providerID(id string, hasID bool, provider string) string {
	if hasID {
		return id
	}
	return provider
}

// ProviderID returns the id Render gives the provider of an IdP Secret holding data (as the
// Kubernetes API returns a Secret's data), for `kubectl kratos status` to show its callback URL.
func ProviderID(data map[string][]byte) string {
	trim := func(b []byte) string { return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r") }
	id, hasID := data["id"]
	return providerID(trim(id), hasID, trim(data["provider"]))
}

// CallbackURL is the redirect URI to register at the IdP for provider id.
func CallbackURL(publicURL, id string) string {
	return strings.TrimRight(publicURL, "/") + "/self-service/methods/oidc/callback/" + id
}

// readProvider reads and checks one IdP Secret; mapper is the `mapper` key's source, if any.
func readProvider(s *source) (p OIDCProvider, mapper []byte, err error) {
	keys, err := s.keys()
	if err != nil {
		return p, nil, err
	}
	for _, k := range keys {
		if !slices.Contains(idpKeys, k) {
			return p, nil, s.fail(k, unknownKeyProblem(k))
		}
	}

	if p.Provider, err = s.required("provider", "add the provider type, one of: "+strings.Join(oidcProviders, ", ")); err != nil {
		return p, nil, err
	}
	if !slices.Contains(oidcProviders, p.Provider) {
		return p, nil, s.fail("provider", "not a provider type Kratos v1.3.1 knows; use one of: "+strings.Join(oidcProviders, ", "))
	}
	apple, microsoft := p.Provider == "apple", p.Provider == "microsoft"

	id, hasID, err := s.text("id")
	if err != nil {
		return p, nil, err
	}
	if p.ID = providerID(id, hasID, p.Provider); !providerIDPattern.MatchString(p.ID) {
		return p, nil, s.fail("id", "not a valid id; use letters, digits, '.', '_', '-' (it becomes part of the callback URL)")
	}
	if len(p.ID) > maxProviderIDLen {
		// It also names the claims mapper's file, which a file system limits to 255 bytes.
		return p, nil, s.failf("id", "longer than %d characters; choose a short id (it becomes part of the callback URL)", maxProviderIDLen)
	}
	if p.ClientID, err = s.required("client_id", "add the OAuth2 client id issued by the provider"); err != nil {
		return p, nil, err
	}

	// Kratos's schema: Apple derives its client secret from the private key and forbids
	// client_secret; every other provider requires client_secret and forbids the apple_* keys.
	if apple {
		if v, ok, err := s.text("client_secret"); err != nil {
			return p, nil, err
		} else if ok && v != "" {
			return p, nil, s.fail("client_secret", "must not be set for provider apple (Kratos signs its own from apple_private_key); remove the key")
		}
		if p.AppleTeamID, err = s.required("apple_team_id", "provider apple needs the Apple Developer Team ID"); err != nil {
			return p, nil, err
		}
		if p.ApplePrivateKeyID, err = s.required("apple_private_key_id", "provider apple needs the Sign in with Apple key id"); err != nil {
			return p, nil, err
		}
		if p.ApplePrivateKey, err = s.required("apple_private_key", "provider apple needs the Sign in with Apple private key (PEM)"); err != nil {
			return p, nil, err
		}
	} else {
		if p.ClientSecret, err = s.required("client_secret", "add the OAuth2 client secret issued by the provider"); err != nil {
			return p, nil, err
		}
		for _, k := range []string{"apple_team_id", "apple_private_key_id", "apple_private_key"} {
			if ok, err := s.has(k); err != nil {
				return p, nil, err
			} else if ok {
				return p, nil, s.fail(k, "only for provider apple; remove the key")
			}
		}
	}
	if microsoft {
		if p.MicrosoftTenant, err = s.required("microsoft_tenant", "provider microsoft needs the Entra ID tenant (common, organizations, consumers, or a tenant id)"); err != nil {
			return p, nil, err
		}
	} else if ok, err := s.has("microsoft_tenant"); err != nil {
		return p, nil, err
	} else if ok {
		return p, nil, s.fail("microsoft_tenant", "only for provider microsoft; remove the key")
	}

	for _, f := range []struct {
		key      string
		dst      *string
		required bool
	}{
		{"issuer_url", &p.IssuerURL, p.Provider == "generic"},
		{"auth_url", &p.AuthURL, false},
		{"token_url", &p.TokenURL, false},
	} {
		v, ok, err := s.text(f.key)
		if err != nil {
			return p, nil, err
		}
		if !ok {
			if f.required {
				return p, nil, s.failf(f.key, "missing; provider %s discovers its endpoints from the issuer URL, add it (e.g. https://accounts.example.com)", p.Provider)
			}
			continue
		}
		if !isAbsURL(v, "http", "https") {
			return p, nil, s.fail(f.key, "not an absolute http(s) URL")
		}
		*f.dst = v
	}

	mapperURL, hasMapperURL, err := s.text("mapper_url")
	if err != nil {
		return p, nil, err
	}
	mapper, hasMapper, err := s.raw("mapper")
	if err != nil {
		return p, nil, err
	}
	switch {
	case hasMapper && hasMapperURL:
		return p, nil, s.fail("mapper", `set only one of "mapper" and "mapper_url"`)
	case hasMapperURL:
		if !isAbsURL(mapperURL, "file", "http", "https", "base64") {
			return p, nil, s.fail("mapper_url", "not a file://, http(s):// or base64:// URL")
		}
		p.MapperURL = mapperURL
	case hasMapper:
		if len(bytes.TrimSpace(mapper)) == 0 {
			return p, nil, s.fail("mapper", "empty; put the jsonnet claims mapper there, or remove the key for the built-in one")
		}
	}

	if v, ok, err := s.text("scope"); err != nil {
		return p, nil, err
	} else if ok {
		if p.Scope = splitList(v); len(p.Scope) == 0 {
			// An empty list would silently drop the provider's default scopes (openid among them).
			return p, nil, s.fail("scope", "empty; list the scopes separated by spaces or commas, or remove the key for the provider's defaults")
		}
	} else {
		p.Scope = slices.Clone(defaultScopes[p.Provider])
	}
	if v, ok, err := s.text("additional_id_token_audiences"); err != nil {
		return p, nil, err
	} else if ok {
		p.AdditionalIDTokenAudiences = splitList(v)
	}

	if b, ok, err := s.raw("requested_claims"); err != nil {
		return p, nil, err
	} else if ok {
		if problem := jsonObjectProblem(b); problem != "" {
			return p, nil, s.fail("requested_claims", problem+`; expected a JSON object such as {"id_token":{"email":null}}`)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return p, nil, s.fail("requested_claims", "not valid JSON")
		}
		p.RequestedClaims = buf.Bytes()
	}

	for _, f := range []struct {
		key    string
		dst    *string
		values []string // nil: any one-line value
	}{
		{"label", &p.Label, nil},
		{"organization_id", &p.OrganizationID, nil},
		{"subject_source", &p.SubjectSource, []string{"userinfo", "me"}},
		{"claims_source", &p.ClaimsSource, []string{"id_token", "userinfo"}},
		{"pkce", &p.PKCE, []string{"auto", "never", "force"}},
	} {
		v, ok, err := s.text(f.key)
		if err != nil {
			return p, nil, err
		}
		if !ok {
			continue
		}
		if f.values != nil && !slices.Contains(f.values, v) {
			return p, nil, s.failf(f.key, "not one of: %s", strings.Join(f.values, ", "))
		}
		if !oneLine(v) {
			return p, nil, s.fail(f.key, "holds a line break or control character; use one line")
		}
		*f.dst = v
	}
	return p, mapper, nil
}

// unknownKeyProblem explains an unknown IdP Secret key, suggesting the spelling Kratos uses.
func unknownKeyProblem(key string) string {
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	if slices.Contains(idpKeys, norm) {
		return fmt.Sprintf("unknown key; did you mean %q?", norm)
	}
	return "unknown key; an IdP Secret takes: " + strings.Join(idpKeys, ", ")
}

// splitList splits a comma- and/or space-separated list, dropping empty items.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// isAbsURL reports whether v is one line and an absolute URL with one of schemes (and a host,
// except for the schemes that have none).
func isAbsURL(v string, schemes ...string) bool {
	if !oneLine(v) {
		return false
	}
	u, err := url.Parse(v)
	if err != nil || !slices.Contains(schemes, u.Scheme) {
		return false
	}
	switch u.Scheme {
	case "file":
		return u.Path != ""
	case "base64":
		return u.Host != "" || u.Opaque != "" || u.Path != ""
	}
	return u.Host != ""
}
