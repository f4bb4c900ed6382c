package config

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kratos-injector/kratos-injector/internal/metricsproxy"
)

// Spec is the validated, non-secret description of one Kratos instance. It is produced by
// inject.ParseAnnotations from a pod's kratos-injector.io/ annotations (which own the defaults),
// carried as JSON in the kratos-config init container's arguments, and consumed by Render. Its
// rules are Validate's; the Secrets and ConfigMaps it reads are Inputs'. It names Secrets and
// ConfigMaps but never holds a value read from them.
//
// A field that names a Secret or ConfigMap carries the tag input:"secret" or input:"configmap"
// and is listed by Inputs (a test holds the two together).
type Spec struct {
	// Database is DatabasePostgres or DatabaseSQLite.
	Database string `json:"database"`
	// DatabaseSecret names the Secret with the Postgres connection (format: docs/annotations.md).
	DatabaseSecret string `json:"databaseSecret,omitempty" input:"secret"`
	// SMTPSecret names the Secret with the SMTP server (format: docs/annotations.md); empty: mail goes nowhere.
	SMTPSecret string `json:"smtpSecret,omitempty" input:"secret"`
	// IDPSecrets names one Secret per external OIDC provider (format: docs/annotations.md), in order.
	IDPSecrets []string `json:"idpSecrets,omitempty" input:"secret"`
	// SecretsSecret names the Secret with cookie/cipher/default keys; empty: random per pod.
	SecretsSecret string `json:"secretsSecret,omitempty" input:"secret"`
	// IdentitySchemas names a ConfigMap with one <id>.json key per schema; empty: built-ins.
	IdentitySchemas string `json:"identitySchemas,omitempty" input:"configmap"`
	// DefaultSchema is the default identity schema id.
	DefaultSchema string `json:"defaultSchema"`
	// ConfigOverlay names a ConfigMap whose kratos.yaml key is deep-merged last.
	ConfigOverlay string `json:"configOverlay,omitempty" input:"configmap"`

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
	// Metrics is MetricsOn or MetricsOff: the kratos-metrics container serves Kratos's
	// Prometheus metrics on MetricsPort (used by injection only).
	Metrics string `json:"metrics"`
}

// Values of Spec fields.
const (
	DatabasePostgres = "postgres"
	DatabaseSQLite   = "sqlite"

	MigrateAuto   = "auto"
	MigrateManual = "manual"

	CourierWatch = "watch"
	CourierOff   = "off"

	MetricsOn  = "true"
	MetricsOff = "false"

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
	// MetricsUpstream is where Kratos serves its Prometheus metrics: the admin API, in the pod.
	MetricsUpstream = metricsproxy.Upstream
	// MetricsPort serves Kratos's metrics, and nothing else, on the pod's IP (kratos-metrics).
	MetricsPort = metricsproxy.Port

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

// Inputs lists the Secrets and ConfigMaps the spec reads, each once: injection mounts exactly
// these, and Render refuses to read any other. The order is fixed (not the fields') because it
// is the order of an injected pod's volumes.
func (s *Spec) Inputs() (secrets, configMaps []string) {
	add := func(list []string, names ...string) []string {
		for _, n := range names {
			if n != "" && !slices.Contains(list, n) {
				list = append(list, n)
			}
		}
		return list
	}
	secrets = add(secrets, s.DatabaseSecret, s.SMTPSecret, s.SecretsSecret)
	secrets = add(secrets, s.IDPSecrets...)
	configMaps = add(configMaps, s.IdentitySchemas, s.ConfigOverlay)
	return secrets, configMaps
}

// MigrateArgs are the arguments of the kratos binary that migrate the database of the Kratos
// whose config is at configPath. The injected migrate init container and `kubectl kratos
// migrate` (which execs into the Kratos container: the admin API has no migration call) run
// the same command. -e takes the DSN from the config (or env DSN); --yes answers the prompt.
func MigrateArgs(configPath string) []string {
	return []string{"migrate", "sql", "-e", "--yes", "-c", configPath}
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
