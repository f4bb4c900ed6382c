// Package selfsigned keeps the webhook's serving certificate when cert-manager is not installed
// (`webhook serve --tls-mode=self-signed`).
//
// One Secret (type kubernetes.io/tls, in the webhook's namespace) holds everything, so that every
// replica serves a certificate from the same CA:
//
//	ca.crt   the CA bundle the API server trusts: the current CA first, then at most the CAs a
//	         serving certificate still in use may chain to (during a CA rotation)
//	ca.key   the current CA's private key (ECDSA P-256, SEC1 PEM)
//	tls.crt  the serving certificate (ECDSA P-256), signed by a CA of ca.crt
//	tls.key  its private key
//
// Every replica runs the same loop (Manager.Run): read the Secret, create it when absent (the loser
// of a create race reads the winner's), renew what is due with an optimistic-concurrency Update
// (the loser of an update race starts over from the winner's Secret), write tls.crt and tls.key
// into the cert dir that controller-runtime's certwatcher reloads, and patch the caBundle of every
// webhook of its MutatingWebhookConfiguration when it differs from ca.crt. No leader election:
// every write is conditional, so replicas converge on one Secret.
//
// Lifetimes: CA 10 years, serving certificate 1 year; each is renewed when less than a third of
// its validity remains (by default), checked at start and every minute, or at once when the
// Secret carries the annotation kratos-injector.io/renew (RequestRenewal, `webhook tls renew`).
//
// Rotation never fails an admission. A serving certificate renewed from the same CA changes
// nothing the API server trusts. A new CA is added to ca.crt (and the caBundle) next to the old
// one, and signs serving certificates only after the rotation grace, once every API server has
// seen the new caBundle; the old CA leaves the bundle one grace after the serving certificate
// moved to the new CA, once every replica has loaded it.
//
// Who can read ca.key: whoever can read the Secret — the webhook's ServiceAccount (its Role names
// this one Secret) and the namespace's administrators. The CA is trusted by nothing but this
// webhook configuration's caBundle, so its key reaches exactly as far as tls.key does: a holder
// could impersonate the webhook only if it could also redirect the Service, which a namespace
// administrator can do anyway.
package selfsigned

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Keys of the Secret.
const (
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
	KeyTLSCert = corev1.TLSCertKey       // tls.crt
	KeyTLSKey  = corev1.TLSPrivateKeyKey // tls.key
)

// AnnotationRenew on the Secret asks the replicas to renew: RenewCA rotates the CA (and then the
// serving certificate, after the rotation grace), any other value renews the serving certificate
// from the current CA. The replica that did it removes the annotation.
const (
	AnnotationRenew = "kratos-injector.io/renew"
	RenewServing    = "serving"
	RenewCA         = "ca"
)

// FieldManager names this code's writes in managedFields.
const FieldManager = "kratos-injector"

// Defaults of Options.
const (
	DefaultCAValidity         = 10 * 365 * 24 * time.Hour
	DefaultServingValidity    = 365 * 24 * time.Hour
	DefaultRenewBeforePercent = 33
	DefaultCheckInterval      = time.Minute
	DefaultRotationGrace      = 2 * time.Minute
)

// backdate is how far in the past a new certificate's NotBefore lies, so that a peer whose clock
// is a little behind accepts it at once. A certificate was issued at NotBefore+backdate.
const backdate = 5 * time.Minute

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

// ensureSecret returns the Secret after creating or renewing what needs it.
func (m *Manager) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	secrets := m.o.Client.CoreV1().Secrets(m.o.SecretNamespace)
	const attempts = 5
	for range attempts {
		sec, err := secrets.Get(ctx, m.o.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			p, err := m.plan(material{}, "", m.o.Now())
			if err != nil {
				return nil, err
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: m.o.SecretName, Namespace: m.o.SecretNamespace, Labels: map[string]string{
					"app.kubernetes.io/name": "kratos-injector", "app.kubernetes.io/component": "webhook-tls",
					"app.kubernetes.io/managed-by": FieldManager,
				}},
				Type: corev1.SecretTypeTLS,
				Data: p.next.data(),
			}
			created, err := secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				m.log.Info("another replica created the Secret first; using it", "secret", m.o.SecretName)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create Secret %s/%s: %w", m.o.SecretNamespace, m.o.SecretName, err)
			}
			m.log.Info("created the CA and serving certificate", "secret", m.o.SecretName, "dnsNames", m.o.DNSNames())
			return created, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get Secret %s/%s: %w", m.o.SecretNamespace, m.o.SecretName, err)
		}
		p, err := m.plan(parseMaterial(sec.Data), sec.Annotations[AnnotationRenew], m.o.Now())
		if err != nil {
			return nil, err
		}
		if len(p.changes) == 0 {
			return sec, nil
		}
		upd := sec.DeepCopy()
		upd.Data = p.next.data()
		if p.clearRenew {
			delete(upd.Annotations, AnnotationRenew)
		}
		updated, err := secrets.Update(ctx, upd, metav1.UpdateOptions{FieldManager: FieldManager})
		if apierrors.IsConflict(err) {
			m.log.Info("the Secret changed meanwhile (another replica); starting over", "secret", m.o.SecretName)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update Secret %s/%s: %w", m.o.SecretNamespace, m.o.SecretName, err)
		}
		m.log.Info("updated the certificates", "secret", m.o.SecretName, "changes", p.changes)
		return updated, nil
	}
	return nil, fmt.Errorf("Secret %s/%s kept changing under %d attempts", m.o.SecretNamespace, m.o.SecretName, attempts)
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

// patchCABundle sets caBundle on every webhook of the configuration that lacks the bundle, with a
// JSON patch that first tests each webhook's name at its index (a configuration edited meanwhile
// fails the patch instead of getting a bundle in the wrong place; the next check retries).
func (m *Manager) patchCABundle(ctx context.Context, bundle []byte) error {
	mwcs := m.o.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := mwcs.Get(ctx, m.o.WebhookConfigName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get MutatingWebhookConfiguration %s (its caBundle must trust the CA): %w", m.o.WebhookConfigName, err)
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	var ops []op
	var names []string
	for i, w := range cfg.Webhooks {
		if bytes.Equal(w.ClientConfig.CABundle, bundle) {
			continue
		}
		ops = append(ops,
			op{"test", fmt.Sprintf("/webhooks/%d/name", i), w.Name},
			op{"add", fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), bundle}) // []byte: base64, as the API wants
		names = append(names, w.Name)
	}
	if len(ops) == 0 {
		return nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	if _, err := mwcs.Patch(ctx, m.o.WebhookConfigName, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("patch the caBundle of MutatingWebhookConfiguration %s: %w", m.o.WebhookConfigName, err)
	}
	m.log.Info("patched caBundle", "mutatingWebhookConfiguration", m.o.WebhookConfigName, "webhooks", names)
	return nil
}

// RequestRenewal annotates the Secret so that the replicas renew at their next check: what is
// RenewServing (a new serving certificate from the current CA) or RenewCA (a new CA, then a
// serving certificate from it after the rotation grace).
func RequestRenewal(ctx context.Context, c kubernetes.Interface, namespace, name, what string) error {
	if what != RenewServing && what != RenewCA {
		return fmt.Errorf("renew %q: want %q or %q", what, RenewServing, RenewCA)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationRenew: what}}})
	_, err := c.CoreV1().Secrets(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("Secret %s/%s not found: is the webhook running with --tls-mode=self-signed?", namespace, name)
	}
	return err
}

// material is the Secret's content, parsed; a part that does not parse is nil.
type material struct {
	cas      []*x509.Certificate // ca.crt, the current CA first
	caKey    *ecdsa.PrivateKey
	leaf     *x509.Certificate
	leafKey  *ecdsa.PrivateKey
	caKeyPEM []byte
	leafPEM  []byte
	keyPEM   []byte
}

func parseMaterial(data map[string][]byte) material {
	var m material
	rest := data[KeyCACert]
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			m.cas = append(m.cas, c)
		}
	}
	if k, err := parseKey(data[KeyCAKey]); err == nil {
		m.caKey, m.caKeyPEM = k, data[KeyCAKey]
	}
	if c, err := parseCert(data[KeyTLSCert]); err == nil {
		m.leaf, m.leafPEM = c, data[KeyTLSCert]
	}
	if k, err := parseKey(data[KeyTLSKey]); err == nil {
		m.leafKey, m.keyPEM = k, data[KeyTLSKey]
	}
	return m
}

func (m material) data() map[string][]byte {
	var bundle []byte
	for _, c := range m.cas {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return map[string][]byte{KeyCACert: bundle, KeyCAKey: m.caKeyPEM, KeyTLSCert: m.leafPEM, KeyTLSKey: m.keyPEM}
}

type plan struct {
	next       material
	changes    []string
	clearRenew bool
}

// plan decides what to renew at now, given the Secret's material and its renew annotation.
func (m *Manager) plan(cur material, renew string, now time.Time) (plan, error) {
	p := plan{next: cur}
	n := &p.next

	// 1. The CA.
	var reason string
	switch {
	case len(n.cas) == 0 || n.caKey == nil || !n.cas[0].IsCA || !samePublicKey(n.cas[0], n.caKey) || !validAt(n.cas[0], now):
		reason = "no valid CA with its key"
	case renew == RenewCA:
		reason = "CA renewal requested"
	case m.due(n.cas[0], now):
		reason = "CA due for renewal (expires " + n.cas[0].NotAfter.UTC().Format(time.RFC3339) + ")"
	}
	if reason != "" {
		ca, key, keyPEM, err := m.issueCA(now)
		if err != nil {
			return p, err
		}
		var keep []*x509.Certificate
		for _, c := range n.cas { // older CAs stay while a serving certificate may chain to them
			if c.IsCA && validAt(c, now) {
				keep = append(keep, c)
			}
		}
		n.cas, n.caKey, n.caKeyPEM = append([]*x509.Certificate{ca}, keep...), key, keyPEM
		p.changes = append(p.changes, "new CA: "+reason)
		if renew == RenewCA {
			p.clearRenew = true
		}
	}
	signer := n.cas[0]
	signerPublished := !now.Before(issuedAt(signer).Add(m.o.RotationGrace))

	// 2. The serving certificate.
	reason = ""
	if why := m.leafProblem(*n, now); why != "" {
		reason = why // nothing that works is being served: issue at once
	} else {
		fromSigner := n.leaf.CheckSignatureFrom(signer) == nil
		switch {
		case !fromSigner:
			reason = "the CA was rotated"
		case renew != "" && renew != RenewCA:
			reason = "renewal requested"
		case m.due(n.leaf, now):
			reason = "due for renewal (expires " + n.leaf.NotAfter.UTC().Format(time.RFC3339) + ")"
		}
		if reason != "" && !fromSigner && !signerPublished {
			// A certificate from the new CA waits until every API server trusts it; one from the
			// CA already in use needs no wait.
			reason = ""
		}
	}
	if reason != "" {
		leafPEM, keyPEM, err := m.issueLeaf(signer, n.caKey, now)
		if err != nil {
			return p, err
		}
		n.leaf, _ = parseCert(leafPEM)
		n.leafKey, _ = parseKey(keyPEM)
		n.leafPEM, n.keyPEM = leafPEM, keyPEM
		p.changes = append(p.changes, "new serving certificate: "+reason)
		if renew != "" && renew != RenewCA {
			p.clearRenew = true
		}
	}

	// 3. Prune the bundle: expired CAs go; an older CA goes once the serving certificate has been
	// signed by the current CA for a whole grace (every replica serves it by then).
	settled := n.leaf.CheckSignatureFrom(signer) == nil && !now.Before(issuedAt(n.leaf).Add(m.o.RotationGrace))
	kept := n.cas[:1:1]
	for _, c := range n.cas[1:] {
		switch {
		case !validAt(c, now):
			p.changes = append(p.changes, "dropped expired CA "+c.Subject.CommonName)
		case settled:
			p.changes = append(p.changes, "dropped previous CA "+c.Subject.CommonName)
		default:
			kept = append(kept, c)
		}
	}
	n.cas = kept
	return p, nil
}

// leafProblem says why the serving certificate cannot be served as it is ("" when it can).
func (m *Manager) leafProblem(n material, now time.Time) string {
	switch {
	case n.leaf == nil || n.leafKey == nil:
		return "no serving certificate and key"
	case !samePublicKey(n.leaf, n.leafKey):
		return "the serving key does not match the certificate"
	case !validAt(n.leaf, now):
		return "the serving certificate is not valid now"
	case !slices.Equal(sortedCopy(n.leaf.DNSNames), sortedCopy(m.o.DNSNames())):
		return "the serving certificate's names " + strings.Join(n.leaf.DNSNames, ",") + " differ from " + strings.Join(m.o.DNSNames(), ",")
	}
	pool := x509.NewCertPool()
	for _, c := range n.cas {
		pool.AddCert(c)
	}
	if _, err := n.leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: m.o.DNSNames()[0], CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return "the serving certificate does not verify against the CA bundle: " + err.Error()
	}
	return ""
}

// due: less than RenewBeforePercent of the certificate's validity remains.
func (m *Manager) due(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return float64(c.NotAfter.Sub(now)) < float64(life)*float64(m.o.RenewBeforePercent)/100
}

func (m *Manager) issueCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: fmt.Sprintf("kratos-injector-ca@%d", now.Unix()), Organization: []string{"kratos-injector"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(m.o.CAValidity),
		IsCA:         true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, keyPEM, err
}

func (m *Manager) issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	names := m.o.DNSNames()
	notAfter := now.Add(m.o.ServingValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

func parseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseKey(p []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM key")
	}
	switch b.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		if ek, ok := k.(*ecdsa.PrivateKey); ok {
			return ek, nil
		}
	}
	return nil, fmt.Errorf("unsupported key %q (want ECDSA)", b.Type)
}

func samePublicKey(c *x509.Certificate, k *ecdsa.PrivateKey) bool {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&k.PublicKey)
}

func validAt(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && now.Before(c.NotAfter)
}

// issuedAt is when a certificate of ours was made (NotBefore is backdated).
func issuedAt(c *x509.Certificate) time.Time { return c.NotBefore.Add(backdate) }

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
