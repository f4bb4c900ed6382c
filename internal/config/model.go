package config

import "encoding/json"

// The typed model of the part of Kratos v1.3.1's configuration that rendering decides. Field
// names follow embedx/config.schema.json of github.com/ory/kratos v1.3.1; schema_test.go checks
// every golden file against that schema. Booleans that must appear even when false (enabled:
// false) carry no omitempty: an absent key would mean Kratos's default, which is often true.

// KratosConfig is the root of kratos.yaml.
type KratosConfig struct {
	// Version is the Kratos release the config is written for; Kratos warns when it runs
	// another one (and when it is missing).
	Version        string          `json:"version"`
	DSN            string          `json:"dsn"`
	Serve          Serve           `json:"serve"`
	Identity       Identity        `json:"identity"`
	Selfservice    Selfservice     `json:"selfservice"`
	Courier        Courier         `json:"courier"`
	OAuth2Provider *OAuth2Provider `json:"oauth2_provider,omitempty"`
	Session        *Session        `json:"session,omitempty"`
	Secrets        Secrets         `json:"secrets"`
	Ciphers        Ciphers         `json:"ciphers"`
	Log            Log             `json:"log"`
}

// Serve is serve.public and serve.admin.
type Serve struct {
	Public PublicServe `json:"public"`
	Admin  AdminServe  `json:"admin"`
}

// PublicServe is serve.public.
type PublicServe struct {
	BaseURL    string     `json:"base_url"`
	Host       string     `json:"host"`
	Port       int        `json:"port"`
	CORS       *CORS      `json:"cors,omitempty"`
	RequestLog RequestLog `json:"request_log"`
}

// AdminServe is serve.admin.
type AdminServe struct {
	BaseURL    string     `json:"base_url"`
	Host       string     `json:"host"`
	Port       int        `json:"port"`
	RequestLog RequestLog `json:"request_log"`
}

// RequestLog keeps the kubelet's probes out of the request log.
type RequestLog struct {
	DisableForHealth bool `json:"disable_for_health"`
}

// CORS is serve.public.cors.
type CORS struct {
	Enabled          bool     `json:"enabled"`
	AllowedOrigins   []string `json:"allowed_origins"`
	AllowCredentials bool     `json:"allow_credentials"`
}

// Identity is identity.
type Identity struct {
	DefaultSchemaID string           `json:"default_schema_id"`
	Schemas         []IdentitySchema `json:"schemas"`
}

// IdentitySchema is one identity.schemas entry.
type IdentitySchema struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// Selfservice is selfservice.
type Selfservice struct {
	DefaultBrowserReturnURL string   `json:"default_browser_return_url"`
	AllowedReturnURLs       []string `json:"allowed_return_urls,omitempty"`
	Flows                   Flows    `json:"flows"`
	Methods                 Methods  `json:"methods"`
}

// Flows is selfservice.flows.
type Flows struct {
	Error        *ErrorFlow       `json:"error,omitempty"`
	Login        LoginFlow        `json:"login"`
	Registration RegistrationFlow `json:"registration"`
	Settings     SettingsFlow     `json:"settings"`
	Recovery     RecoveryFlow     `json:"recovery"`
	Verification VerificationFlow `json:"verification"`
}

// ErrorFlow is selfservice.flows.error.
type ErrorFlow struct {
	UIURL string `json:"ui_url"`
}

// LoginFlow is selfservice.flows.login.
type LoginFlow struct {
	UIURL string `json:"ui_url,omitempty"`
	Style string `json:"style,omitempty"`
}

// RegistrationFlow is selfservice.flows.registration.
type RegistrationFlow struct {
	Enabled bool               `json:"enabled"`
	UIURL   string             `json:"ui_url,omitempty"`
	After   *RegistrationAfter `json:"after,omitempty"`
}

// RegistrationAfter holds the per-method hooks run after a registration.
type RegistrationAfter struct {
	Password *Hooks `json:"password,omitempty"`
	OIDC     *Hooks `json:"oidc,omitempty"`
	WebAuthn *Hooks `json:"webauthn,omitempty"`
	Code     *Hooks `json:"code,omitempty"`
}

// Hooks is a list of hooks of one method.
type Hooks struct {
	Hooks []Hook `json:"hooks"`
}

// Hook is a built-in Kratos hook without configuration (session, show_verification_ui, ...).
type Hook struct {
	Hook string `json:"hook"`
}

// SettingsFlow is selfservice.flows.settings.
type SettingsFlow struct {
	UIURL       string         `json:"ui_url,omitempty"`
	RequiredAAL string         `json:"required_aal"`
	After       *SettingsAfter `json:"after,omitempty"`
}

// SettingsAfter holds where the browser goes after a settings method.
type SettingsAfter struct {
	OIDC     *ReturnTo `json:"oidc,omitempty"`
	WebAuthn *ReturnTo `json:"webauthn,omitempty"`
}

// ReturnTo is a default_browser_return_url holder.
type ReturnTo struct {
	DefaultBrowserReturnURL string `json:"default_browser_return_url"`
}

// RecoveryFlow is selfservice.flows.recovery.
type RecoveryFlow struct {
	Enabled bool           `json:"enabled"`
	UIURL   string         `json:"ui_url,omitempty"`
	Use     string         `json:"use,omitempty"`
	After   *RecoveryAfter `json:"after,omitempty"`
}

// RecoveryAfter holds the hooks run after a recovery.
type RecoveryAfter struct {
	Hooks []Hook `json:"hooks"`
}

// VerificationFlow is selfservice.flows.verification.
type VerificationFlow struct {
	Enabled                 bool   `json:"enabled"`
	UIURL                   string `json:"ui_url,omitempty"`
	Use                     string `json:"use,omitempty"`
	Lifespan                string `json:"lifespan,omitempty"`
	NotifyUnknownRecipients *bool  `json:"notify_unknown_recipients,omitempty"`
}

// Methods is selfservice.methods.
type Methods struct {
	Profile      Toggle         `json:"profile"`
	Link         Toggle         `json:"link"`
	Passkey      Toggle         `json:"passkey"`
	Code         Toggle         `json:"code"`
	Password     PasswordMethod `json:"password"`
	TOTP         TOTPMethod     `json:"totp"`
	LookupSecret Toggle         `json:"lookup_secret"`
	WebAuthn     WebAuthnMethod `json:"webauthn"`
	OIDC         OIDCMethod     `json:"oidc"`
}

// Toggle is a method with nothing but its switch.
type Toggle struct {
	Enabled bool `json:"enabled"`
}

// PasswordMethod is selfservice.methods.password.
type PasswordMethod struct {
	Enabled bool           `json:"enabled"`
	Config  PasswordConfig `json:"config"`
}

// PasswordConfig is selfservice.methods.password.config. haveibeenpwned stays off: the pod must
// not call the internet on every password change, and tests run offline.
type PasswordConfig struct {
	HaveIBeenPwnedEnabled bool `json:"haveibeenpwned_enabled"`
}

// TOTPMethod is selfservice.methods.totp.
type TOTPMethod struct {
	Enabled bool        `json:"enabled"`
	Config  *TOTPConfig `json:"config,omitempty"`
}

// TOTPConfig is selfservice.methods.totp.config.
type TOTPConfig struct {
	Issuer string `json:"issuer"`
}

// WebAuthnMethod is selfservice.methods.webauthn; Kratos requires config when it is enabled.
type WebAuthnMethod struct {
	Enabled bool            `json:"enabled"`
	Config  *WebAuthnConfig `json:"config,omitempty"`
}

// WebAuthnConfig is selfservice.methods.webauthn.config.
type WebAuthnConfig struct {
	Passwordless bool       `json:"passwordless"`
	RP           WebAuthnRP `json:"rp"`
}

// WebAuthnRP is the WebAuthn relying party.
type WebAuthnRP struct {
	ID          string   `json:"id"`
	DisplayName string   `json:"display_name"`
	Origins     []string `json:"origins"`
}

// OIDCMethod is selfservice.methods.oidc.
type OIDCMethod struct {
	Enabled bool        `json:"enabled"`
	Config  *OIDCConfig `json:"config,omitempty"`
}

// OIDCConfig is selfservice.methods.oidc.config.
type OIDCConfig struct {
	Providers []OIDCProvider `json:"providers"`
}

// OIDCProvider is one external identity provider, with every field Kratos v1.3.1 accepts.
type OIDCProvider struct {
	ID                         string          `json:"id"`
	Provider                   string          `json:"provider"`
	Label                      string          `json:"label,omitempty"`
	ClientID                   string          `json:"client_id"`
	ClientSecret               string          `json:"client_secret,omitempty"`
	IssuerURL                  string          `json:"issuer_url,omitempty"`
	AuthURL                    string          `json:"auth_url,omitempty"`
	TokenURL                   string          `json:"token_url,omitempty"`
	MapperURL                  string          `json:"mapper_url"`
	Scope                      []string        `json:"scope,omitempty"`
	MicrosoftTenant            string          `json:"microsoft_tenant,omitempty"`
	SubjectSource              string          `json:"subject_source,omitempty"`
	AppleTeamID                string          `json:"apple_team_id,omitempty"`
	ApplePrivateKeyID          string          `json:"apple_private_key_id,omitempty"`
	ApplePrivateKey            string          `json:"apple_private_key,omitempty"`
	RequestedClaims            json.RawMessage `json:"requested_claims,omitempty"`
	OrganizationID             string          `json:"organization_id,omitempty"`
	AdditionalIDTokenAudiences []string        `json:"additional_id_token_audiences,omitempty"`
	ClaimsSource               string          `json:"claims_source,omitempty"`
	PKCE                       string          `json:"pkce,omitempty"`
}

// Courier is courier.
type Courier struct {
	SMTP SMTP `json:"smtp"`
	// MessageRetries is how many failed sends a queued mail survives before Kratos abandons it.
	MessageRetries int `json:"message_retries"`
}

// CourierMessageRetries is the rendered courier.message_retries. Kratos tries each queued mail
// once per poll of its queue (every second, 10 mails a poll) and by default abandons it after 5
// failures: an SMTP server down for five seconds loses every mail requested meanwhile. 3600
// failures keep a mail for at least an hour of SMTP outage (longer when more are queued), and
// then delivers it; a 5xx answer from the server still abandons it at once, as Kratos does.
const CourierMessageRetries = 3600

// SMTP is courier.smtp.
type SMTP struct {
	ConnectionURI string `json:"connection_uri"`
	FromAddress   string `json:"from_address"`
	FromName      string `json:"from_name,omitempty"`
}

// OAuth2Provider is oauth2_provider (Ory Hydra's admin API).
type OAuth2Provider struct {
	URL string `json:"url"`
}

// Session is session.
type Session struct {
	Whoami SessionWhoami `json:"whoami"`
}

// SessionWhoami is session.whoami.
type SessionWhoami struct {
	RequiredAAL string `json:"required_aal"`
}

// Secrets is secrets; each list is newest first (Kratos signs with the first, accepts all).
type Secrets struct {
	Default []string `json:"default"`
	Cookie  []string `json:"cookie,omitempty"`
	Cipher  []string `json:"cipher"`
}

// Ciphers is ciphers.
type Ciphers struct {
	Algorithm string `json:"algorithm"`
}

// Log is log.
type Log struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}
