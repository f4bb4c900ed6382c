package testbed

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Injector is the project's built `webhook serve`, running on 127.0.0.1 with a certificate from
// the bed's CA and registered with the API server by URL as the product's manifests register it:
// objectSelector on the opt-in label, failurePolicy Fail, sideEffects None, reinvocationPolicy
// IfNeeded.
type Injector struct {
	Proc       *Proc
	URL        string
	MetricsURL string
}

// InjectorOptions configures StartInjector.
type InjectorOptions struct {
	// Name of the MutatingWebhookConfiguration.
	Name string
	// SkipNamespaceLabel: namespaces carrying this label (value "true") are not sent to this
	// injector (so an installed copy of the product can own them in the same bed).
	SkipNamespaceLabel string
}

// StartInjector runs bin/webhook serve with the bed's images as its Kratos and injector images,
// registers it and waits until the API server calls it.
func (b *Bed) StartInjector(cp *ControlPlane, opts InjectorOptions) (*Injector, error) {
	bin, err := ProjectBin("webhook")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	certDir := b.Path("injector", "certs")
	if err := cp.CA.WriteServing(certDir, "kratos-injector", "127.0.0.1"); err != nil {
		return nil, err
	}
	in := &Injector{URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", ports[0]), MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])}
	in.Proc, err = b.Start("webhook", nil, bin, "serve",
		"--bind-address", "127.0.0.1", "--port", strconv.Itoa(ports[0]), "--cert-dir", certDir,
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--kratos-image", KratosImage, "--injector-image", InjectorImage, "--shutdown-delay", "0")
	if err != nil {
		return nil, err
	}
	if err := in.Proc.WaitReady(30*time.Second, httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2]), "", nil)); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exclude := []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public"},
	}}
	if opts.SkipNamespaceLabel != "" {
		exclude = append(exclude, metav1.LabelSelectorRequirement{Key: opts.SkipNamespaceLabel, Operator: metav1.LabelSelectorOpDoesNotExist})
	}
	if _, err := cp.RegisterWebhook(ctx, WebhookOptions{
		Name: opts.Name, URL: in.URL, CABundle: cp.CA.CertPEM,
		ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"kratos-injector.io/inject": "true"}},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: exclude},
		TimeoutSeconds:    5,
	}); err != nil {
		return nil, err
	}
	return in, in.waitActive(ctx, cp)
}

// waitActive dry-runs a labelled pod until the API server has loaded the configuration and the
// injector answered.
func (in *Injector) waitActive(ctx context.Context, cp *ControlPlane) error {
	for {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "probe", Labels: map[string]string{"kratos-injector.io/inject": "true"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
		}
		got, err := cp.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Annotations["kratos-injector.io/status"] != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server never called the injector (last: %v); end of its log:\n%s", err, in.Proc.Tail(20)) //nolint:errorlint // may be nil: printed for the reader, not wrapped
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Metric returns the sum of a Prometheus counter's samples whose labels contain every given
// `name="value"` pair.
func (in *Injector) Metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(in.MetricsURL)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
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
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}
