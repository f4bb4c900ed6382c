// PKI: the Secret's keys, its content parsed (material), and the generation and checks of the
// CA and serving certificates. Nothing here knows the Manager, the API server or the cert dir.

package selfsigned

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the Secret.
const (
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
	KeyTLSCert = corev1.TLSCertKey       // tls.crt
	KeyTLSKey  = corev1.TLSPrivateKeyKey // tls.key
)

// backdate is how far in the past a new certificate's NotBefore lies, so that a peer whose clock
// is a little behind accepts it at once. A certificate was issued at NotBefore+backdate.
const backdate = 5 * time.Minute

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

// issueCA makes a self-signed CA valid from now for validity, with a new key (returned parsed and
// as PEM).
func issueCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
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
		NotAfter:     now.Add(validity),
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

// issueLeaf makes a serving certificate for names (the first is also its CommonName), signed by
// ca, valid from now for validity but never beyond the CA, with a new key.
func issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
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
