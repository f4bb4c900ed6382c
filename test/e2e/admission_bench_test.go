package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
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
// controller-runtime's allow-all webhook (the load harness's baseline, its own process), and by
// the same server answering with the injector's patch for that pod (fixed-patch: the API server
// applies a webhook's patch within the time it records for the webhook, about 0.5 ms of its CPU
// for this one), each registered the same way: by URL with the bed's CA, the opt-in objectSelector, failurePolicy
// Fail, 5 s timeout. Each webhook's latency is the API server's own
// apiserver_admission_webhook_admission_duration_seconds for it over the run (p50 and p99
// interpolated in its buckets, as PromQL's histogram_quantile does, and the exact mean from its
// sum). Each runs twice, alternately, and the API server's histograms of both runs are summed.
// The pod is the load harness's review's: its app container and annotations.
//
// Run it alone (it needs root, as every e2e does):
//
//	go test -run '^$' -bench AdmissionThroughAPIServer -benchtime 1x ./test/e2e/
func BenchmarkAdmissionThroughAPIServer(b *testing.B) {
	s, inj := webhook(b)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, name := range []string{"kwok-bench-1", "kwok-bench-2"} {
		if _, err := s.Kwok.AddNode(ctx, name); err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatal(err)
		}
	}
	tmpl := reviewPod(b)
	allow := startBaseline(b, s, harness.AllowAll, allowAllNamespace)
	patchFile := filepath.Join(b.TempDir(), "patch.json")
	if err := os.WriteFile(patchFile, injectorPatch(b, s, inj), 0o600); err != nil {
		b.Fatal(err)
	}
	fixed := startBaseline(b, s, harness.FixedPatch, fixedPatchNamespace, "-patch", patchFile)

	const deployments, perDeployment = 10, 100
	run := func(name string, nsLabels map[string]string, webhookName string) benchRun {
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
		benchSecrets(b, ctx, s, ns)
		before, createsBefore := webhookLatency(b, ctx, s.CP.Client, webhookName), podCreateLatency(b, ctx, s.CP.Client)
		apiCPU := apiServerCPU(b, s)
		start := time.Now()
		for i := range deployments {
			spec := kwokSpec()
			spec.Containers = tmpl.Spec.Containers
			d := deployment(fmt.Sprintf("bench-%d", i), perDeployment, map[string]string{injectLabel: "true", "bench": "true"}, tmpl.Annotations, spec)
			if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, d, createOpts); err != nil {
				b.Fatal(err)
			}
		}
		waitCreated(b, ctx, s, ns, deployments*perDeployment)
		took := time.Since(start)
		apiCPU = apiServerCPU(b, s) - apiCPU
		if nsLabels == nil { // the injector's run: its pods are injected
			pods, err := s.CP.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "bench=true", Limit: 1})
			if err != nil || len(pods.Items) == 0 || pods.Items[0].Annotations["kratos-injector.io/status"] == "" {
				b.Fatalf("the injector's pods are not injected: %v", err)
			}
		}
		if f := failedCreates(ctx, s.CP.Client, ns); f != "no FailedCreate event" {
			b.Fatalf("%s: failed pod creations: %s", name, f)
		}
		h := webhookLatency(b, ctx, s.CP.Client, webhookName).minus(before)
		creates := podCreateLatency(b, ctx, s.CP.Client).minus(createsBefore)
		if h.count < deployments*perDeployment {
			b.Fatalf("%s: the API server counted %v admissions by %s, want %d", name, h.count, webhookName, deployments*perDeployment)
		}
		// Free the API server and the controllers before the next run: its pods gone.
		bg := metav1.DeletePropagationBackground
		for i := range deployments {
			_ = s.CP.Client.AppsV1().Deployments(ns).Delete(ctx, fmt.Sprintf("bench-%d", i), metav1.DeleteOptions{PropagationPolicy: &bg})
		}
		waitPods(b, s.CP.Client, ns, "bench=true", 5*time.Minute, func(p []corev1.Pod) error {
			if len(p) > 0 {
				return fmt.Errorf("%d pods left", len(p))
			}
			return nil
		})
		return benchRun{webhook: h, creates: creates, took: took, apiCPU: apiCPU}
	}

	b.ResetTimer()
	for range b.N {
		// Twice each, in the order injector, allow-all, fixed-patch, fixed-patch, allow-all,
		// injector, so that none always runs on a fresher API server.
		injector := func() benchRun {
			return run("bench-injector", nil, "kratos-injector-e2e.kratos-injector.io")
		}
		allowAll := func() benchRun {
			return run("bench-allow-all", map[string]string{skipDevWebhook: "true", allowAllNamespace: "true"}, allow)
		}
		fixedPatch := func() benchRun {
			return run("bench-fixed-patch", map[string]string{skipDevWebhook: "true", fixedPatchNamespace: "true"}, fixed)
		}
		o1 := injector()
		a1 := allowAll()
		f1 := fixedPatch()
		f2 := fixedPatch()
		a2 := allowAll()
		o2 := injector()
		oursRun, baseRun, fixedRun := o1.plus(o2), a1.plus(a2), f1.plus(f2)
		ours, base, fixedH := oursRun.webhook, baseRun.webhook, fixedRun.webhook
		for _, r := range []struct {
			name string
			run  benchRun
		}{{"kratos-injector", oursRun}, {"allow-all", baseRun}, {"fixed-patch", fixedRun}} {
			h, c := r.run.webhook, r.run.creates
			b.Logf("%-16s %5.0f admissions in %s: p50 %s, p99 %s, mean %s; %.1f%% over 25 ms; %5.0f pod creations: p50 %s, p99 %s, mean %s; API server CPU %s per pod",
				r.name, h.count, r.run.took.Round(time.Millisecond), h.quantile(0.5), h.quantile(0.99), h.mean(), 100*(h.count-h.buckets[0.025])/h.count,
				c.count, c.quantile(0.5), c.quantile(0.99), c.mean(), (r.run.apiCPU / time.Duration(max(c.count, 1))).Round(10*time.Microsecond))
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
		b.ReportMetric(ms(fixedH.quantile(0.99)), "fixed-patch-p99-ms")
		b.ReportMetric(ms(fixedH.mean()), "fixed-patch-mean-ms")
		if p := fixedH.quantile(0.99); p > 0 {
			b.ReportMetric(float64(ours.quantile(0.99))/float64(p), "p99-ratio-to-fixed-patch")
		}
		b.ReportMetric(ms(oursRun.creates.quantile(0.99)), "injector-create-p99-ms")
		b.ReportMetric(ms(baseRun.creates.quantile(0.99)), "allow-all-create-p99-ms")
		b.ReportMetric(ms(fixedRun.creates.quantile(0.99)), "fixed-patch-create-p99-ms")
	}
}

// benchRun is what one run of BenchmarkAdmissionThroughAPIServer measured: the API server's
// latency histograms of the webhook's admissions and of the pod creations (each with all of
// its admission), how long the Deployments took to create their pods, and the API server's
// CPU meanwhile (the creations, and what the scheduler, kwok and the controllers do with the
// pods: it grows with their size).
type benchRun struct {
	webhook, creates histogram
	took             time.Duration
	apiCPU           time.Duration // the API server's CPU time while the pods were created
}

func (r benchRun) plus(o benchRun) benchRun {
	return benchRun{webhook: r.webhook.plus(o.webhook), creates: r.creates.plus(o.creates), took: r.took + o.took, apiCPU: r.apiCPU + o.apiCPU}
}

// apiServerCPU is the CPU time the API server has used so far.
func apiServerCPU(b *testing.B, s *stack) time.Duration {
	b.Helper()
	d, err := harness.CPUTime(s.CP.APIServer.Cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// waitCreated waits until the Deployments of ns report want pods. It reads their status, not
// the pods: listing 1,000 pods of 10 KB every few hundred milliseconds costs the API server
// more CPU than the admissions measured, and more for the injected pods, which are twice the
// size, so the benchmark's own reads would stall the webhook calls it measures.
func waitCreated(b *testing.B, ctx context.Context, s *stack, ns string, want int32) {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var have int32
	for {
		ds, err := s.CP.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			have = 0
			for _, d := range ds.Items {
				have += d.Status.Replicas
			}
			if have >= want {
				return
			}
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%s: %d/%d pods created after 5 minutes (%v); %s", ns, have, want, err, failedCreates(context.Background(), s.CP.Client, ns))
		case <-time.After(time.Second):
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

// allowAllNamespace and fixedPatchNamespace label the namespaces whose opt-in pods the
// baselines admit (and skipDevWebhook keeps the injector out of them).
const (
	allowAllNamespace   = "kratos-injector-e2e/bench-allow-all"
	fixedPatchNamespace = "kratos-injector-e2e/bench-fixed-patch"
)

// injectorPatch is the JSON patch the running injector answers the load harness's review with.
func injectorPatch(b *testing.B, s *stack, inj *injector) []byte {
	b.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.CP.CA.CertPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := c.Post(inj.URL, "application/json", bytes.NewReader(harness.DefaultReview))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var rv admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil || rv.Response == nil || !rv.Response.Allowed || len(rv.Response.Patch) == 0 {
		b.Fatalf("the injector's answer to the harness's review: %v %+v", err, rv.Response)
	}
	return rv.Response.Patch
}

// startBaseline runs one of the load harness's controller-runtime baseline servers (kind, with
// args) as its own process with a certificate from the bed's CA, registers it for the opt-in
// pods of the namespaces labelled nsLabel the way the injector is registered, and returns the
// webhook's name once the API server calls it.
func startBaseline(b *testing.B, s *stack, kind, nsLabel string, args ...string) string {
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
	if err := s.CP.CA.WriteServing(dir, kind, "127.0.0.1"); err != nil {
		b.Fatal(err)
	}
	port, err := testbed.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	proc, err := s.Bed.Start(kind, nil, bin, append([]string{"-server", kind, "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-cert-dir", dir}, args...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(proc.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := s.CP.RegisterWebhook(ctx, testbed.WebhookOptions{
		Name: kind + "-bench", URL: fmt.Sprintf("https://127.0.0.1:%d%s", port, harness.MutatePath), CABundle: s.CP.CA.CertPEM,
		ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{injectLabel: "true"}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{nsLabel: "true"}},
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
	ns := namespace(b, s, "bench-probe")
	nsObj, err := s.CP.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	nsObj.Labels = mergeLabels(nsObj.Labels, map[string]string{skipDevWebhook: "true", nsLabel: "true"})
	if _, err := s.CP.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	for webhookLatency(b, ctx, s.CP.Client, webhookName).count == 0 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Labels: map[string]string{injectLabel: "true"}}, Spec: kwokSpec()}
		_, _ = s.CP.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		select {
		case <-ctx.Done():
			b.Fatalf("the API server never called the %s webhook; its log:\n%s", kind, proc.Tail(20))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return webhookName
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
