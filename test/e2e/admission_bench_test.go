package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/hack/loadtest/harness"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// BenchmarkAdmissionThroughAPIServer measures admission as the API server sees it: 1,000
// labelled pods created by 10 Deployments on kwok nodes, admitted by the injector (the built
// `webhook serve`), then the same Deployments in another namespace admitted by
// controller-runtime's allow-all webhook (the load harness's baseline, its own process)
// registered the same way: by URL with the bed's CA, the opt-in objectSelector, failurePolicy
// Fail, 5 s timeout. Each webhook's latency is the API server's own
// apiserver_admission_webhook_admission_duration_seconds for it over the run (p50 and p99
// interpolated in its buckets, as PromQL's histogram_quantile does, and the exact mean from its
// sum). The pod is the load harness's review's: its app container and annotations.
//
// Run it alone (it needs root, as every e2e does):
//
//	go test -run '^$' -bench AdmissionThroughAPIServer -benchtime 1x ./test/e2e/
func BenchmarkAdmissionThroughAPIServer(b *testing.B) {
	s, _ := webhook(b)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, name := range []string{"kwok-bench-1", "kwok-bench-2"} {
		if _, err := s.Kwok.AddNode(ctx, name); err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatal(err)
		}
	}
	tmpl := reviewPod(b)
	allow := startAllowAll(b, s)

	const deployments, perDeployment = 10, 100
	run := func(name string, nsLabels map[string]string, register func(ns string) string) (histogram, time.Duration) {
		ns := namespace(b, s, name)
		if nsLabels != nil {
			nsObj, err := s.CP.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			nsObj.Labels = mergeLabels(nsObj.Labels, nsLabels)
			if _, err := s.CP.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		webhookName := register(ns)
		benchSecrets(b, ctx, s, ns)
		before := webhookLatency(b, ctx, s.CP.Client, webhookName)
		start := time.Now()
		for i := range deployments {
			spec := kwokSpec()
			spec.Containers = tmpl.Spec.Containers
			d := deployment(fmt.Sprintf("bench-%d", i), perDeployment, map[string]string{injectLabel: "true", "bench": "true"}, tmpl.Annotations, spec)
			if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, d, createOpts); err != nil {
				b.Fatal(err)
			}
		}
		waitPods(b, s.CP.Client, ns, "bench=true", 5*time.Minute, func(p []corev1.Pod) error {
			if len(p) < deployments*perDeployment {
				return fmt.Errorf("%d/%d pods created", len(p), deployments*perDeployment)
			}
			return nil
		})
		took := time.Since(start)
		if f := failedCreates(ctx, s.CP.Client, ns); f != "no FailedCreate event" {
			b.Fatalf("%s: failed pod creations: %s", name, f)
		}
		h := webhookLatency(b, ctx, s.CP.Client, webhookName).minus(before)
		if h.count < deployments*perDeployment {
			b.Fatalf("%s: the API server counted %v admissions by %s, want %d", name, h.count, webhookName, deployments*perDeployment)
		}
		// Free the API server and the controllers before the next run.
		for i := range deployments {
			_ = s.CP.Client.AppsV1().Deployments(ns).Delete(ctx, fmt.Sprintf("bench-%d", i), metav1.DeleteOptions{})
		}
		return h, took
	}

	b.ResetTimer()
	for range b.N {
		ours, oursTook := run("bench-injector", nil, func(string) string { return "kratos-injector-e2e.kratos-injector.io" })
		pods, err := s.CP.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "bench=true", Limit: 1})
		if err != nil || len(pods.Items) == 0 || len(pods.Items[0].Spec.InitContainers) == 0 {
			b.Fatalf("the injector's pods are not injected: %v", err)
		}
		base, baseTook := run("bench-allow-all", map[string]string{skipDevWebhook: "true"}, allow)
		for _, r := range []struct {
			name string
			h    histogram
			took time.Duration
		}{{"kratos-injector", ours, oursTook}, {"allow-all", base, baseTook}} {
			b.Logf("%-16s %5.0f admissions in %s: p50 %s, p99 %s, mean %s", r.name, r.h.count, r.took.Round(time.Millisecond),
				r.h.quantile(0.5), r.h.quantile(0.99), r.h.mean())
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(ms(ours.quantile(0.5)), "injector-p50-ms")
		b.ReportMetric(ms(ours.quantile(0.99)), "injector-p99-ms")
		b.ReportMetric(ms(ours.mean()), "injector-mean-ms")
		b.ReportMetric(ms(base.quantile(0.5)), "allow-all-p50-ms")
		b.ReportMetric(ms(base.quantile(0.99)), "allow-all-p99-ms")
		b.ReportMetric(ms(base.mean()), "allow-all-mean-ms")
		if p := base.quantile(0.99); p > 0 {
			b.ReportMetric(float64(ours.quantile(0.99))/float64(p), "p99-ratio")
		}
		if m := base.mean(); m > 0 {
			b.ReportMetric(float64(ours.mean())/float64(m), "mean-ratio")
		}
	}
}

// reviewPod is the pod of the load harness's review.
func reviewPod(b *testing.B) *corev1.Pod {
	b.Helper()
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(harness.DefaultReview, &rv); err != nil {
		b.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(rv.Request.Object.Raw, &pod); err != nil {
		b.Fatal(err)
	}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].VolumeMounts = nil // the service-account token: the API server adds its own
	}
	return &pod
}

// benchSecrets creates the Secrets the review pod's annotations name (not read at admission,
// but a pod that names missing Secrets is not what a cluster runs).
func benchSecrets(b *testing.B, ctx context.Context, s *stack, ns string) {
	b.Helper()
	createSecrets(b, ctx, s, ns, map[string]map[string]string{
		"storefront-db-app": {"host": "db.bench.example", "port": "5432", "username": "kratos", "password": "bench-Db-Pa55word", "dbname": "kratos"},
		"storefront-smtp":   {"host": "smtp.bench.example", "port": "587", "user": "kratos", "password": "bench-Smtp-Pa55word"},
		"github-idp":        {"provider": "github", "client_id": "bench", "client_secret": "bench-GitHub-Secret"},
		"google-idp":        {"provider": "google", "client_id": "bench", "client_secret": "bench-Google-Secret"},
	})
}

// startAllowAll runs the load harness's controller-runtime allow-all server as its own process
// with a certificate from the bed's CA, and returns a function registering it for one
// namespace's opt-in pods the way the injector is registered (returning the webhook's name).
func startAllowAll(b *testing.B, s *stack) func(ns string) string {
	b.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "loadtest")
	build := exec.Command("go", "build", "-o", bin, "./hack/loadtest")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build ./hack/loadtest: %v\n%s", err, out)
	}
	if err := s.CP.CA.WriteServing(dir, "allow-all", "127.0.0.1"); err != nil {
		b.Fatal(err)
	}
	port, err := testbed.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	proc, err := s.Bed.Start("allow-all", nil, bin, "-server", harness.AllowAll, "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-cert-dir", dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(proc.Stop)
	return func(ns string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		const name = "allow-all-bench"
		cfg, err := s.CP.RegisterWebhook(ctx, testbed.WebhookOptions{
			Name: name, URL: fmt.Sprintf("https://127.0.0.1:%d%s", port, harness.MutatePath), CABundle: s.CP.CA.CertPEM,
			ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{injectLabel: "true"}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			TimeoutSeconds:    5,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = s.CP.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
		})
		webhookName := cfg.Webhooks[0].Name
		// The API server loads configurations asynchronously: dry-run pods until it calls it.
		for webhookLatency(b, ctx, s.CP.Client, webhookName).count == 0 {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Labels: map[string]string{injectLabel: "true"}},
				Spec: kwokSpec()}
			_, _ = s.CP.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			select {
			case <-ctx.Done():
				b.Fatalf("the API server never called the allow-all webhook; its log:\n%s", proc.Tail(20))
			case <-time.After(200 * time.Millisecond):
			}
		}
		return webhookName
	}
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
