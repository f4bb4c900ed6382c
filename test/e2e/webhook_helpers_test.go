package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/test/e2e/bed"
)

// injector is the built `webhook serve`, registered with the API server as the product's
// manifests register it: objectSelector on the opt-in label, failurePolicy Fail, sideEffects
// None, reinvocationPolicy IfNeeded.
type injector struct {
	Proc       *bed.Proc
	URL        string
	MetricsURL string
}

var (
	injOnce sync.Once
	inj     *injector
	injErr  error
)

// webhook starts the shared injector on first use.
func webhook(t testing.TB) (*stack, *injector) {
	t.Helper()
	s := cluster(t)
	injOnce.Do(func() { inj, injErr = startInjector(s) })
	if injErr != nil {
		t.Fatalf("injector: %v", injErr)
	}
	return s, inj
}

func startInjector(s *stack) (*injector, error) {
	bin, err := bed.ProjectBin("webhook")
	if err != nil {
		return nil, err
	}
	ports, err := bed.FreePorts(3)
	if err != nil {
		return nil, err
	}
	certDir := s.Bed.Path("injector", "certs")
	if err := s.CP.CA.WriteServing(certDir, "kratos-injector", "127.0.0.1"); err != nil {
		return nil, err
	}
	in := &injector{URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", ports[0]), MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])}
	in.Proc, err = s.Bed.Start("webhook", nil, bin, "serve",
		"--bind-address", "127.0.0.1", "--port", strconv.Itoa(ports[0]), "--cert-dir", certDir,
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--kratos-image", bed.KratosImage, "--injector-image", bed.InjectorImage, "--shutdown-delay", "0")
	if err != nil {
		return nil, err
	}
	if err := in.Proc.WaitReady(30*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2]), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = s.CP.RegisterWebhook(ctx, bed.WebhookOptions{
		Name: "kratos-injector-e2e", URL: in.URL, CABundle: s.CP.CA.CertPEM,
		ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kratos-injector.io/inject": "true"}},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public"},
		}, {
			// The install tests' namespaces are served by the installed webhook alone.
			Key: "kratos-injector-e2e/skip-dev-webhook", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"},
		}}},
		TimeoutSeconds: 5,
	})
	if err != nil {
		return nil, err
	}
	return in, waitWebhookActive(ctx, s)
}

// waitWebhookActive dry-runs a labelled pod until the API server has loaded the configuration
// and the injector answered.
func waitWebhookActive(ctx context.Context, s *stack) error {
	for {
		p := kwokPod("probe", map[string]string{"kratos-injector.io/inject": "true"}, nil)
		got, err := s.CP.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Annotations["kratos-injector.io/status"] != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server never called the injector (last: %v)", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Metric returns the sum of a Prometheus counter's samples whose labels contain every given
// `name="value"` pair.
func (in *injector) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(in.MetricsURL)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
