package selfsigned

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// clock is a settable clock for the manager.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

func testOptions(c *clock, dir string) Options {
	o := Options{
		SecretNamespace: "kratos-injector", SecretName: "kratos-injector-tls",
		WebhookConfigName: "kratos-injector", ServiceName: "kratos-injector",
		CertDir: dir, CheckInterval: time.Second, RotationGrace: 10 * time.Second,
		Log: logr.Discard(), Now: c.now,
	}
	o.setDefaults()
	return o
}

// TestPlan walks the certificate lifecycle on the plan alone (no API): bootstrap, steady state,
// serving renewal when due or asked, a CA rotation in its two graces, and repairs.
func TestPlan(t *testing.T) {
	c := &clock{}
	m := &Manager{o: testOptions(c, t.TempDir())}
	step := func(cur material, renew string, wantChanges ...string) (material, plan) {
		t.Helper()
		p, err := m.plan(cur, renew, c.now())
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(p.changes, "; "); !matchAll(got, wantChanges) || (len(wantChanges) == 0) != (got == "") {
			t.Fatalf("changes %q, want %q", got, wantChanges)
		}
		return parseMaterial(p.next.data()), p
	}

	s, _ := step(material{}, "", "new CA: no valid CA", "new serving certificate: no serving certificate")
	if len(s.cas) != 1 || s.leaf.CheckSignatureFrom(s.cas[0]) != nil || m.leafProblem(s, c.now()) != "" {
		t.Fatal("bootstrap: want one CA and a serving certificate from it")
	}
	if s.leaf.NotAfter.Sub(s.leaf.NotBefore) != DefaultServingValidity+backdate || s.cas[0].NotAfter.Sub(s.cas[0].NotBefore) != DefaultCAValidity+backdate {
		t.Errorf("validity: serving %s, CA %s", s.leaf.NotAfter.Sub(s.leaf.NotBefore), s.cas[0].NotAfter.Sub(s.cas[0].NotBefore))
	}
	if want := []string{"kratos-injector.kratos-injector.svc", "kratos-injector.kratos-injector.svc.cluster.local"}; strings.Join(s.leaf.DNSNames, ",") != strings.Join(want, ",") {
		t.Errorf("DNS names %v", s.leaf.DNSNames)
	}
	step(s, "") // steady

	// Due: less than a third of the serving validity left → renewed from the same CA.
	c.advance(DefaultServingValidity * 7 / 10)
	s2, _ := step(s, "", "new serving certificate: due for renewal")
	if !bytes.Equal(s2.cas[0].Raw, s.cas[0].Raw) || s2.leaf.SerialNumber.Cmp(s.leaf.SerialNumber) == 0 {
		t.Fatal("serving renewal changed the CA or kept the serial")
	}
	// Asked.
	s3, p := step(s2, "true", "new serving certificate: renewal requested")
	if !p.clearRenew || s3.leaf.SerialNumber.Cmp(s2.leaf.SerialNumber) == 0 {
		t.Fatal("requested renewal not done or annotation kept")
	}

	// CA rotation: the new CA joins the bundle; the serving certificate waits a grace.
	s4, p := step(s3, RenewCA, "new CA: CA renewal requested")
	if !p.clearRenew || len(s4.cas) != 2 || !bytes.Equal(s4.cas[1].Raw, s3.cas[0].Raw) || !bytes.Equal(s4.leafPEM, s3.leafPEM) {
		t.Fatal("CA rotation: want [new, old] and the same serving certificate")
	}
	step(s4, "")           // within the grace: nothing
	step(s4, RenewServing) // even when asked: the new CA is not trusted everywhere yet
	c.advance(m.o.RotationGrace + time.Second)
	s5, _ := step(s4, "", "new serving certificate: the CA was rotated")
	if s5.leaf.CheckSignatureFrom(s5.cas[0]) != nil || len(s5.cas) != 2 {
		t.Fatal("after the grace: want a serving certificate from the new CA, both CAs still trusted")
	}
	c.advance(m.o.RotationGrace + time.Second)
	s6, _ := step(s5, "", "dropped previous CA")
	if len(s6.cas) != 1 || !bytes.Equal(s6.cas[0].Raw, s5.cas[0].Raw) {
		t.Fatal("the old CA was not dropped after the second grace")
	}

	// Repairs: a key that does not match, a CA key lost, names changed.
	broken := s6
	broken.keyPEM, broken.leafKey = s.keyPEM, s.leafKey
	step(parseMaterial(broken.data()), "", "new serving certificate: the serving key does not match")
	lost := s6
	lost.caKeyPEM, lost.caKey = nil, nil
	s7, _ := step(parseMaterial(lost.data()), "", "new CA: no valid CA") // the serving certificate still works: it waits
	if len(s7.cas) != 2 || !bytes.Equal(s7.leafPEM, s6.leafPEM) {
		t.Fatal("a lost CA key: want a new CA next to the old one, the working serving certificate kept")
	}
	m2 := &Manager{o: m.o}
	m2.o.ServiceName = "renamed"
	p, err := m2.plan(s6, "", c.now())
	if err != nil || len(p.changes) != 1 || !strings.Contains(p.changes[0], "names") {
		t.Fatalf("renamed Service: %v %v", p.changes, err)
	}

	// The CA itself comes due after two thirds of its life.
	c.advance(DefaultCAValidity * 7 / 10)
	step(s6, "", "new CA: CA due for renewal", "new serving certificate: the serving certificate is not valid now")
}

func matchAll(got string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(got, w) {
			return false
		}
	}
	return true
}
