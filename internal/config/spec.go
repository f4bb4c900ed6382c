package config

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
)

// Spec is the validated, non-secret description of one Kratos instance. It is produced by
// inject.ParseAnnotations from a pod's kratos-injector.io/ annotations (which own defaults and
// validation), carried as JSON in the kratos-config init container's arguments, and consumed by
// Render. It names Secrets and ConfigMaps but never holds a value read from them.
type Spec struct {
	// Database is DatabasePostgres or DatabaseSQLite.
	Database string `json:"database"`
	// DatabaseSecret names the Secret with the Postgres connection (DESIGN §4.1).
	DatabaseSecret string `json:"databaseSecret,omitempty"`
	// SMTPSecret names the Secret with the SMTP server (DESIGN §4.2); empty: mail goes nowhere.
	SMTPSecret string `json:"smtpSecret,omitempty"`
	// IDPSecrets names one Secret per external OIDC provider (DESIGN §4.3), in order.
	IDPSecrets []string `json:"idpSecrets,omitempty"`
	// SecretsSecret names the Secret with cookie/cipher/default keys; empty: random per pod.
	SecretsSecret string `json:"secretsSecret,omitempty"`
	// IdentitySchemas names a ConfigMap with one <id>.json key per schema; empty: built-ins.
	IdentitySchemas string `json:"identitySchemas,omitempty"`
	// DefaultSchema is the default identity schema id.
	DefaultSchema string `json:"defaultSchema"`
	// ConfigOverlay names a ConfigMap whose kratos.yaml key is deep-merged last.
	ConfigOverlay string `json:"configOverlay,omitempty"`

	PublicURL         string   `json:"publicURL"`
	UIURL             string   `json:"uiURL,omitempty"`
	ReturnURL         string   `json:"returnURL,omitempty"`
	AllowedReturnURLs []string `json:"allowedReturnURLs,omitempty"`
	CORSOrigins       []string `json:"corsOrigins,omitempty"`
	HydraAdminURL     string   `json:"hydraAdminURL,omitempty"`

	// Features are the charm's switches, see the Feature* constants.
	Features []string `json:"features"`

	SenderName    string `json:"senderName"`
	SenderAddress string `json:"senderAddress"`

	// Migrate is MigrateAuto or MigrateManual.
	Migrate string `json:"migrate"`
	// Courier is CourierWatch or CourierOff.
	Courier string `json:"courier"`
	// Sidecar is SidecarNative or SidecarContainer (used by injection only).
	Sidecar string `json:"sidecar"`
	// Image is the Kratos image (used by injection only).
	Image string `json:"image"`
	// LogLevel is Kratos's log level (trace, debug, info, warning, error, fatal, panic).
	LogLevel string `json:"logLevel"`
	// CPU and Memory are resource quantities for the Kratos container (used by injection only).
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	// Admin is AdminLocalhost or AdminPod: where the admin API listens.
	Admin string `json:"admin"`
}

// Values of Spec fields.
const (
	DatabasePostgres = "postgres"
	DatabaseSQLite   = "sqlite"

	MigrateAuto   = "auto"
	MigrateManual = "manual"

	CourierWatch = "watch"
	CourierOff   = "off"

	SidecarNative    = "native"
	SidecarContainer = "container"

	AdminLocalhost = "localhost"
	AdminPod       = "pod"

	FeatureLocalIDP               = "local-idp"
	FeatureMFA                    = "mfa"
	FeatureVerification           = "verification"
	FeatureRecovery               = "recovery"
	FeaturePasswordless           = "passwordless"
	FeatureOIDCWebAuthnSequencing = "oidc-webauthn-sequencing"
)

// AllFeatures lists every feature switch, in documentation order.
var AllFeatures = []string{FeatureLocalIDP, FeatureMFA, FeatureVerification, FeatureRecovery, FeaturePasswordless, FeatureOIDCWebAuthnSequencing}

// Ports and paths shared by injection (which mounts) and rendering (which reads and writes).
const (
	PublicPort = 4433
	AdminPort  = 4434

	// DefaultInputDir is where injection mounts the referenced Secrets and ConfigMaps:
	// <input>/secrets/<name>/<key> and <input>/configmaps/<name>/<key>.
	DefaultInputDir = "/var/run/kratos-injector"
	// DefaultConfigDir is the in-memory emptyDir the render init container writes to and Kratos reads.
	DefaultConfigDir = "/etc/kratos"
	// ConfigFile is the rendered config's file name inside the config dir.
	ConfigFile = "kratos.yaml"
	// DefaultDataDir holds the SQLite database (an emptyDir).
	DefaultDataDir = "/var/lib/kratos"
)

// SecretDir is where the Secret name is mounted under inputDir.
func SecretDir(inputDir, name string) string { return filepath.Join(inputDir, "secrets", name) }

// ConfigMapDir is where the ConfigMap name is mounted under inputDir.
func ConfigMapDir(inputDir, name string) string {
	return filepath.Join(inputDir, "configmaps", name)
}

// HasFeature reports whether the feature switch f is on.
func (s *Spec) HasFeature(f string) bool {
	for _, x := range s.Features {
		if x == f {
			return true
		}
	}
	return false
}

// Marshal is the one serialization of a Spec (for the init container's args and the spec hash).
func (s *Spec) Marshal() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("marshal spec: %w", err)
	}
	return string(b), nil
}

// UnmarshalSpec parses a Spec serialized by Marshal, refusing unknown fields (a newer injector's
// spec rendered by an older image would otherwise silently lose settings).
func UnmarshalSpec(data string) (*Spec, error) {
	var s Spec
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	return &s, nil
}
