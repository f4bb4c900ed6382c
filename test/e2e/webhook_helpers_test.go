package e2e

import (
	"sync"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// skipDevWebhook labels namespaces that the URL-registered injector below must leave alone (the
// install tests run the product's manifests there).
const skipDevWebhook = "kratos-injector-e2e/skip-dev-webhook"

// injector wraps the shared testbed.Injector for tests.
type injector struct{ *testbed.Injector }

var (
	injOnce sync.Once
	inj     *injector
	injErr  error
)

// webhook starts the shared injector (the built `webhook serve`) on first use.
func webhook(t testing.TB) (*stack, *injector) {
	t.Helper()
	s := cluster(t)
	injOnce.Do(func() {
		var in *testbed.Injector
		in, injErr = s.Bed.StartInjector(s.CP, testbed.InjectorOptions{Name: "kratos-injector-e2e", SkipNamespaceLabel: skipDevWebhook})
		inj = &injector{in}
	})
	if injErr != nil {
		t.Fatalf("injector: %v", injErr)
	}
	return s, inj
}

// Metric reads a counter of the injector, failing the test when metrics cannot be read.
func (in *injector) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, err := in.Injector.Metric(name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
