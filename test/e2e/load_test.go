package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// installLoad runs on the installed self-signed webhook (two replicas on the real node, called
// by the API server through its Service): 10 labelled Deployments of 100 pods on kwok nodes are
// created at once, and while they are being admitted one webhook replica is deleted (a graceful
// stop, as a node drain or a rollout does) and replaced by its Deployment. Every pod must be
// created without a single failed creation (no FailedCreate event from any ReplicaSet), each
// injected exactly once, and the API server's own admission latency histogram for the webhook
// is reported.
func installLoad(t *testing.T, s *stack, ns string) {
	const deployments, perDeployment = 10, 100
	const total = deployments * perDeployment
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := installQuietClient(t, s)
	// Each injected pod requests 100m CPU for Kratos: 1,000 of them need more than one kwok node
	// (64 CPUs) besides what the other tests left there.
	for _, name := range []string{"kwok-load-1", "kwok-load-2"} {
		if _, err := s.Kwok.AddNode(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	before := webhookLatency(t, ctx, s.CP.Client, "inject.kratos-injector.io")

	start := time.Now()
	for i := range deployments {
		d := deployment(fmt.Sprintf("load-%d", i), perDeployment, map[string]string{injectLabel: "true", "load": "true"}, nil, kwokSpec())
		if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, createOpts); err != nil {
			t.Fatal(err)
		}
	}

	// Once a fifth of the pods exist, stop one replica; its Deployment starts another.
	victim := installWaitWebhookReady(t, ctx, s, time.Minute)[0]
	waitPods(t, c, ns, "load=true", 3*time.Minute, func(p []corev1.Pod) error {
		if len(p) < total/5 {
			return fmt.Errorf("%d/%d pods created", len(p), total)
		}
		return nil
	})
	killed := time.Now()
	if err := s.CP.Client.CoreV1().Pods(installNS).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := installWaitWebhookReady(t, ctx, s, 3*time.Minute)
	var replacement string
	for _, p := range replicas {
		if p.Name != victim.Name && p.CreationTimestamp.After(victim.CreationTimestamp.Time) {
			replacement = p.Name
		}
	}
	if replacement == "" {
		t.Errorf("no replacement for webhook pod %s among %v", victim.Name, podNames(replicas))
	}
	t.Logf("webhook pod %s deleted after %s; replacement %s Ready %s later", victim.Name,
		killed.Sub(start).Round(time.Millisecond), replacement, time.Since(killed).Round(time.Millisecond))

	pods, err := waitRunning(ctx, c, ns, "load=true", total, 6*time.Minute)
	if err != nil {
		t.Fatalf("%v; %s", err, failedCreates(ctx, s.CP.Client, ns))
	}
	t.Logf("%d labelled pods from %d Deployments Running %s after the first create", len(pods), deployments, time.Since(start).Round(time.Millisecond))

	// Each pod injected exactly once: one status, one render container, one Kratos.
	var twice, missing []string
	for i := range pods {
		p := &pods[i]
		count := map[string]int{}
		for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for _, ct := range list {
				count[ct.Name]++
			}
		}
		switch {
		case p.Annotations[inject.AnnotationStatus] == "" || count[inject.ContainerKratos] == 0:
			missing = append(missing, p.Name)
		case count[inject.ContainerKratos] != 1 || count[inject.ContainerConfig] != 1:
			twice = append(twice, p.Name)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("of %d pods, %d not injected %v, %d injected more than once %v", len(pods), len(missing), first(missing, 5), len(twice), first(twice, 5))
	}

	// No failed creation: a refused admission shows as a FailedCreate event of the ReplicaSet
	// (which then retries, so counting pods alone would hide it).
	if report := failedCreates(ctx, s.CP.Client, ns); report != "no FailedCreate event" {
		t.Errorf("pod creations failed while a webhook replica restarted, want none: %s", report)
	}

	after := webhookLatency(t, ctx, s.CP.Client, "inject.kratos-injector.io")
	d := after.minus(before)
	if d.count < float64(total) {
		t.Errorf("the API server timed %.0f admissions by the webhook, want at least %d", d.count, total)
	}
	t.Logf("API server's apiserver_admission_webhook_admission_duration_seconds for the webhook over %.0f admissions: p50 %s, p99 %s (from its histogram)",
		d.count, d.quantile(0.50), d.quantile(0.99))
}

// waitRunning polls (from the API server's cache: a list of 1,000 pods is not free) until n
// pods match selector and are Running.
func waitRunning(ctx context.Context, c kubernetes.Interface, ns, selector string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	created, running := 0, 0
	for {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: "0"})
		if err == nil {
			created, running = len(list.Items), 0
			for i := range list.Items {
				if list.Items[i].Status.Phase == corev1.PodRunning {
					running++
				}
			}
			if running >= n {
				return list.Items, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("after %s: %d pods created, %d Running, want %d Running", timeout, created, running, n)
		case <-time.After(2 * time.Second):
		}
	}
}

// failedCreates sums the FailedCreate events of the namespace, with the first messages.
func failedCreates(ctx context.Context, c kubernetes.Interface, ns string) string {
	events, err := c.CoreV1().Events(ns).List(context.WithoutCancel(ctx), metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
	if err != nil {
		return fmt.Sprintf("events: %v", err)
	}
	failed := 0
	var msgs []string
	for _, e := range events.Items {
		failed += int(max(e.Count, 1))
		if len(msgs) < 3 {
			msgs = append(msgs, e.InvolvedObject.Name+": "+e.Message)
		}
	}
	if failed == 0 {
		return "no FailedCreate event"
	}
	return fmt.Sprintf("%d FailedCreate: %s", failed, strings.Join(msgs, " | "))
}

func podNames(pods []corev1.Pod) []string {
	out := make([]string, len(pods))
	for i := range pods {
		out[i] = pods[i].Name
	}
	return out
}

func first(list []string, n int) []string {
	return list[:min(n, len(list))]
}

// histogram is a cumulative Prometheus histogram: upper bound -> count.
type histogram struct {
	buckets map[float64]float64
	count   float64
	sum     float64 // seconds
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{buckets: map[float64]float64{}, count: h.count - o.count, sum: h.sum - o.sum}
	for le, v := range h.buckets {
		out.buckets[le] = v - o.buckets[le]
	}
	return out
}

func (h histogram) plus(o histogram) histogram {
	out := histogram{buckets: map[float64]float64{}, count: h.count + o.count, sum: h.sum + o.sum}
	for le, v := range h.buckets {
		out.buckets[le] = v + o.buckets[le]
	}
	return out
}

// mean is the exact mean latency (sum / count).
func (h histogram) mean() time.Duration {
	if h.count <= 0 {
		return 0
	}
	return time.Duration(h.sum / h.count * float64(time.Second)).Round(10 * time.Microsecond)
}

// quantile interpolates linearly within the bucket holding q, as PromQL's histogram_quantile.
func (h histogram) quantile(q float64) time.Duration {
	les := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if h.count <= 0 || len(les) == 0 {
		return 0
	}
	rank := q * h.count
	prevLE, prevCount := 0.0, 0.0
	for _, le := range les {
		c := h.buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return time.Duration(prevLE * float64(time.Second))
			}
			frac := 1.0
			if c > prevCount {
				frac = (rank - prevCount) / (c - prevCount)
			}
			return time.Duration((prevLE + (le-prevLE)*frac) * float64(time.Second)).Round(10 * time.Microsecond)
		}
		prevLE, prevCount = le, c
	}
	return time.Duration(prevLE * float64(time.Second))
}

// webhookLatency reads the API server's admission latency histogram for one webhook's CREATE
// admissions (summed over its rejected and type labels) from its /metrics.
func webhookLatency(t testing.TB, ctx context.Context, c kubernetes.Interface, webhook string) histogram {
	t.Helper()
	return apiServerHistogram(t, ctx, c, "apiserver_admission_webhook_admission_duration_seconds", `name="`+webhook+`"`, `operation="CREATE"`)
}

// podCreateLatency reads the API server's latency histogram of pod creations (POST pods, not
// dry runs): what a controller waits for a pod, all of its admission included.
func podCreateLatency(t testing.TB, ctx context.Context, c kubernetes.Interface) histogram {
	t.Helper()
	return apiServerHistogram(t, ctx, c, "apiserver_request_duration_seconds", `verb="POST"`, `resource="pods"`, `subresource=""`, `dry_run=""`)
}

// apiServerHistogram reads one histogram of the API server's /metrics, summed over the series
// whose labels contain every one of labels.
func apiServerHistogram(t testing.TB, ctx context.Context, c kubernetes.Interface, metric string, labels ...string) histogram {
	t.Helper()
	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	h := histogram{buckets: map[float64]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"_") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, metric+"_bucket{"):
			le := labelValue(line, "le")
			bound, err := strconv.ParseFloat(le, 64)
			if le == "+Inf" {
				bound, err = math.Inf(1), nil
			}
			if err == nil {
				h.buckets[bound] += v
			}
		case strings.HasPrefix(line, metric+"_count{"):
			h.count += v
		case strings.HasPrefix(line, metric+"_sum{"):
			h.sum += v
		}
	}
	return h
}

func labelValue(line, name string) string {
	_, rest, ok := strings.Cut(line, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}
