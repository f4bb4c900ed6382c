// The Manager: its Options, and the loop every replica runs (Run, Sync) that ties the plan, the
// Secret, the cert dir and the caBundle together.

package selfsigned

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
)

// Defaults of Options.
const (
	DefaultCAValidity         = 10 * 365 * 24 * time.Hour
	DefaultServingValidity    = 365 * 24 * time.Hour
	DefaultRenewBeforePercent = 33
	DefaultCheckInterval      = time.Minute
	DefaultRotationGrace      = 2 * time.Minute
)

// Options configure a Manager.
type Options struct {
	// Client reaches the API server (the ServiceAccount's rights: see manifests/self-signed).
	Client kubernetes.Interface
	// SecretNamespace and SecretName locate the Secret.
	SecretNamespace, SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle is kept (every webhook
	// in it).
	WebhookConfigName string
	// ServiceName and ServiceNamespace give the serving certificate's DNS names:
	// <svc>.<ns>.svc (what the API server dials) and <svc>.<ns>.svc.cluster.local.
	ServiceName, ServiceNamespace string
	// CertDir receives tls.crt and tls.key (the webhook server's --cert-dir).
	CertDir string
	// CAValidity and ServingValidity are the certificates' lifetimes (a serving certificate never
	// outlives its CA).
	CAValidity, ServingValidity time.Duration
	// RenewBeforePercent: a certificate is renewed when less than this share of its validity
	// remains.
	RenewBeforePercent int
	// CheckInterval is how often the Secret, the files and the caBundle are checked.
	CheckInterval time.Duration
	// RotationGrace is how long a change must have been published before the next step relies on
	// it (a new CA signs; an old CA leaves the bundle). It must exceed CheckInterval plus the
	// certwatcher's reload (10 s) and the API servers' watch delay.
	RotationGrace time.Duration
	// Log receives what the manager does.
	Log logr.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.ServingValidity == 0 {
		o.ServingValidity = DefaultServingValidity
	}
	if o.RenewBeforePercent == 0 {
		o.RenewBeforePercent = DefaultRenewBeforePercent
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.RotationGrace == 0 {
		o.RotationGrace = DefaultRotationGrace
	}
	if o.ServiceNamespace == "" {
		o.ServiceNamespace = o.SecretNamespace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports the first unusable setting (after defaults); the Client is checked by New.
func (o Options) Validate() error {
	o.setDefaults()
	switch {
	case o.SecretNamespace == "" || o.SecretName == "":
		return errors.New("the Secret's namespace and name are required")
	case o.WebhookConfigName == "":
		return errors.New("the MutatingWebhookConfiguration's name is required")
	case o.ServiceName == "":
		return errors.New("the Service's name is required")
	case o.CertDir == "":
		return errors.New("the cert dir is required")
	case o.RenewBeforePercent < 1 || o.RenewBeforePercent > 90:
		return fmt.Errorf("renew-before percentage %d: want 1-90", o.RenewBeforePercent)
	case o.ServingValidity < time.Hour:
		return fmt.Errorf("serving certificate validity %s: want at least 1h", o.ServingValidity)
	case o.CAValidity < 2*o.ServingValidity:
		return fmt.Errorf("CA validity %s: want at least twice the serving certificate's (%s)", o.CAValidity, o.ServingValidity)
	case o.CheckInterval < 100*time.Millisecond:
		return fmt.Errorf("check interval %s: too short", o.CheckInterval)
	case o.RotationGrace <= o.CheckInterval:
		return fmt.Errorf("rotation grace %s: must exceed the check interval (%s) so every replica loads a certificate before the next step relies on it", o.RotationGrace, o.CheckInterval)
	}
	return nil
}

// DNSNames are the serving certificate's names; the first is what the API server dials for a
// webhook registered by service reference.
func (o Options) DNSNames() []string {
	ns := o.ServiceNamespace
	if ns == "" {
		ns = o.SecretNamespace
	}
	base := o.ServiceName + "." + ns + ".svc"
	return []string{base, base + ".cluster.local"}
}

// Manager keeps the certificate. Create it with New, run it with Run.
type Manager struct {
	o        Options
	log      logr.Logger
	synced   chan struct{}
	syncOnce sync.Once
	ready    atomic.Bool
}

// New checks the options and returns a Manager.
func New(o Options) (*Manager, error) {
	if o.Client == nil {
		return nil, errors.New("selfsigned: no API client")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.setDefaults()
	return &Manager{o: o, log: o.Log, synced: make(chan struct{})}, nil
}

// Synced is closed once the certificate is in place: the Secret exists, tls.crt and tls.key are in
// the cert dir, and the webhook configuration trusts the CA.
func (m *Manager) Synced() <-chan struct{} { return m.synced }

// ReadyCheck is a healthz.Checker for /readyz: it fails until the first successful Sync.
func (m *Manager) ReadyCheck(*http.Request) error {
	if !m.ready.Load() {
		return fmt.Errorf("serving certificate not in place yet (Secret %s/%s, MutatingWebhookConfiguration %s)",
			m.o.SecretNamespace, m.o.SecretName, m.o.WebhookConfigName)
	}
	return nil
}

// Run syncs at once (retrying with backoff until it succeeds), then every CheckInterval, until
// ctx ends. Errors after the first success are logged: the certificate in place stays valid.
func (m *Manager) Run(ctx context.Context) error {
	delay := 500 * time.Millisecond
	for {
		err := m.Sync(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		m.log.Error(err, "serving certificate not in place yet; retrying", "in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, m.o.CheckInterval)
	}
	t := time.NewTicker(m.o.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
				m.log.Error(err, "certificate check failed; the current certificate stays in use")
			}
		}
	}
}

// Sync brings the Secret, the cert dir and the caBundle up to date, once.
func (m *Manager) Sync(ctx context.Context) error {
	sec, err := m.ensureSecret(ctx)
	if err != nil {
		return err
	}
	if err := m.writeFiles(sec.Data[KeyTLSCert], sec.Data[KeyTLSKey]); err != nil {
		return err
	}
	if err := m.patchCABundle(ctx, sec.Data[KeyCACert]); err != nil {
		return err
	}
	if !m.ready.Swap(true) {
		leaf, _ := parseCert(sec.Data[KeyTLSCert])
		if leaf != nil {
			m.log.Info("serving certificate in place", "serial", leaf.SerialNumber.Text(16), "notAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	m.syncOnce.Do(func() { close(m.synced) })
	return nil
}

// writeFiles puts the serving certificate where the webhook server's certwatcher reads it. Each
// file is replaced atomically (temp file + rename), the key first; a reader that catches the new
// key with the old certificate fails to load the pair and keeps serving the previous one until
// the next event.
func (m *Manager) writeFiles(cert, key []byte) error {
	if err := os.MkdirAll(m.o.CertDir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyTLSKey, key}, {KeyTLSCert, cert}} {
		path := filepath.Join(m.o.CertDir, f.name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		tmp, err := os.CreateTemp(m.o.CertDir, "."+f.name+".*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(f.data)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			_ = os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}
