// The rotation plan: given the Secret's material, its renew annotation and the time, decide what
// to renew (a new CA, a new serving certificate, CAs dropped from the bundle). No API call and no
// file: the Manager stores what the plan says (kube.go) and the tests drive it with a clock.

package selfsigned

import (
	"crypto/x509"
	"slices"
	"strings"
	"time"
)

// plan is the outcome of one decision: the material to store, what changed (logged; empty when
// nothing is to be written) and whether the renew annotation has been served.
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
		ca, key, keyPEM, err := issueCA(now, m.o.CAValidity)
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
		leafPEM, keyPEM, err := issueLeaf(signer, n.caKey, m.o.DNSNames(), m.o.ServingValidity, now)
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

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
