package config

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/version"
)

// RenderOptions says where the inputs are and where the outputs will live. The zero value is
// the injected pod's layout.
type RenderOptions struct {
	// InputDir holds the mounted Secrets and ConfigMaps (see SecretDir, ConfigMapDir).
	// Default DefaultInputDir.
	InputDir string
	// ConfigDir is the absolute directory the Kratos container reads the rendered files from:
	// kratos.yaml refers to its schemas and mappers by file:// URLs under it. Default
	// DefaultConfigDir. (Render writes nothing; see Result.WriteFiles.)
	ConfigDir string
	// DataDir is the absolute directory of the SQLite database. Default DefaultDataDir.
	DataDir string
	// Rand is the source of the per-pod secrets rendered without a secrets Secret.
	// Default crypto/rand.Reader; tests pass a fixed stream for stable golden files.
	Rand io.Reader
}

func (o RenderOptions) withDefaults() RenderOptions {
	if o.InputDir == "" {
		o.InputDir = DefaultInputDir
	}
	if o.ConfigDir == "" {
		o.ConfigDir = DefaultConfigDir
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return o
}

// Result is a rendered configuration, in memory.
type Result struct {
	// Files maps a slash-separated path relative to the config dir to its content: ConfigFile
	// (kratos.yaml) and the identity schemas and claims mappers it refers to.
	Files map[string][]byte
	// Warnings are things the operator should know (random secrets, mail going nowhere, ...).
	// They hold no secret value and are meant to be logged.
	Warnings []string
}

// Render builds the Kratos configuration for spec from the Secrets and ConfigMaps mounted under
// opts.InputDir. It reads only, writes nothing, and either succeeds whole or fails with one error
// line that names the Secret or ConfigMap and key at fault (an *InputError inside) and never
// holds a value read from a Secret.
func Render(spec *Spec, opts RenderOptions) (*Result, error) {
	opts = opts.withDefaults()
	if err := checkSpec(spec, opts); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	r := &renderer{spec: spec, opts: opts, files: map[string][]byte{}}
	r.secrets, r.configMaps = spec.Inputs()
	r.feat = r.features()

	cfg := KratosConfig{
		Version: version.KratosVersion,
		Serve:   r.serve(),
		Log:     Log{Level: spec.LogLevel, Format: "json"},
		// A cipher is always present (given or random), so OIDC tokens are stored encrypted.
		Ciphers: Ciphers{Algorithm: "xchacha20-poly1305"},
		Session: r.session(),
	}
	if spec.HydraAdminURL != "" {
		cfg.OAuth2Provider = &OAuth2Provider{URL: spec.HydraAdminURL}
	}
	var err error
	if cfg.DSN, err = r.databaseDSN(); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if cfg.Courier.SMTP, err = r.courier(); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	cfg.Courier.MessageRetries = CourierMessageRetries
	if cfg.Secrets, err = r.kratosSecrets(); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if cfg.Identity, err = r.identity(); err != nil {
		return nil, fmt.Errorf("identity schemas: %w", err)
	}
	providers, err := r.identityProviders()
	if err != nil {
		return nil, fmt.Errorf("identity provider: %w", err)
	}
	cfg.Selfservice = r.selfservice(providers)

	tree, err := toTree(cfg)
	if err != nil {
		return nil, err
	}
	over, err := r.overlay()
	if err != nil {
		return nil, fmt.Errorf("config overlay: %w", err)
	}
	tree = deepMerge(tree, over)
	body, err := yaml.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("marshal kratos.yaml: %w", err)
	}
	r.files[ConfigFile] = append([]byte(configHeader), body...)
	return &Result{Files: r.files, Warnings: r.warnings}, nil
}

const configHeader = "# Rendered by kratos-injector (webhook render) from the pod's kratos-injector.io/\n" +
	"# annotations and the Secrets and ConfigMaps they name. Edits here are lost on restart:\n" +
	"# change the annotations, or merge settings in with kratos-injector.io/config.\n"

// renderer carries one Render call's inputs and collected outputs.
type renderer struct {
	spec     *Spec
	opts     RenderOptions
	feat     features
	files    map[string][]byte
	warnings []string
	// secrets and configMaps are the spec's Inputs: all that injection mounts.
	secrets, configMaps []string
}

func (r *renderer) warn(msg string) { r.warnings = append(r.warnings, msg) }

// openSecret opens the Secret name, which must be one of the spec's Inputs. Injection mounts
// only those, so a Secret read from a field Inputs forgets would be "not mounted" in every pod;
// this makes the omission fail every test that renders the field instead.
func (r *renderer) openSecret(name string) (*source, error) {
	if !slices.Contains(r.secrets, name) {
		return nil, fmt.Errorf("internal error: Secret %q is read but not listed by Spec.Inputs, so injection does not mount it", name)
	}
	return openSecret(r.opts.InputDir, name)
}

// openConfigMap is openSecret for ConfigMaps.
func (r *renderer) openConfigMap(name string) (*source, error) {
	if !slices.Contains(r.configMaps, name) {
		return nil, fmt.Errorf("internal error: ConfigMap %q is read but not listed by Spec.Inputs, so injection does not mount it", name)
	}
	return openConfigMap(r.opts.InputDir, name)
}

// fileURL is the file:// URL under which Kratos finds the rendered file rel.
func (r *renderer) fileURL(rel string) string {
	return (&url.URL{Scheme: "file", Path: path.Join(filepath.ToSlash(r.opts.ConfigDir), rel)}).String()
}

// serve renders serve: the public API on every address of the pod, the admin API on the pod's
// loopback only (reachable by the app's containers and by port-forward) unless admin is `pod`.
func (r *renderer) serve() Serve {
	adminHost := "127.0.0.1"
	if r.spec.Admin == AdminPod {
		adminHost = "0.0.0.0"
	}
	s := Serve{
		Public: PublicServe{
			BaseURL: r.spec.PublicURL, Host: "0.0.0.0", Port: PublicPort,
			RequestLog: RequestLog{DisableForHealth: true},
		},
		Admin: AdminServe{
			BaseURL: fmt.Sprintf("http://127.0.0.1:%d/", AdminPort), Host: adminHost, Port: AdminPort,
			RequestLog: RequestLog{DisableForHealth: true},
		},
	}
	if len(r.spec.CORSOrigins) > 0 {
		s.Public.CORS = &CORS{Enabled: true, AllowedOrigins: r.spec.CORSOrigins, AllowCredentials: true}
	}
	return s
}

// checkSpec checks what Render relies on: the spec's own rules (Validate) and the layout.
func checkSpec(s *Spec, opts RenderOptions) error {
	if s == nil {
		return errors.New("no spec")
	}
	for _, d := range []struct{ name, dir string }{{"config dir", opts.ConfigDir}, {"data dir", opts.DataDir}} {
		if !filepath.IsAbs(d.dir) {
			return fmt.Errorf("%s %q: not an absolute path", d.name, d.dir)
		}
	}
	return s.Validate()
}

// WriteFiles writes the result into dir (the config dir) without ever leaving a partial set:
// every file is first written into a temporary directory inside dir, then renamed into place,
// kratos.yaml last, so a reader that sees kratos.yaml sees the files it refers to. Files hold
// secrets: they are readable by owner and group only (the Kratos container must run as the
// same user or share the pod's fsGroup).
func (res *Result) WriteFiles(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".render-")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(tmp); rmErr != nil && err == nil {
			err = fmt.Errorf("write config: %w", rmErr)
		}
	}()

	rels := sortedKeys(res.Files)
	// kratos.yaml last.
	rels = slices.DeleteFunc(rels, func(s string) bool { return s == ConfigFile })
	if _, ok := res.Files[ConfigFile]; ok {
		rels = append(rels, ConfigFile)
	}
	for _, rel := range rels {
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return fmt.Errorf("write config: %q is not a path inside the config dir", rel)
		}
		p := filepath.Join(tmp, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
		if err := os.WriteFile(p, res.Files[rel], 0o640); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	for _, rel := range rels {
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
		if err := os.Rename(filepath.Join(tmp, filepath.FromSlash(rel)), dst); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	return nil
}
