package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// Prometheus's view of an injected pod: from outside the pod (the host, on the node's bridge,
// as a scraper in the cluster would reach the pod IP) the kratos-metrics port serves Kratos's
// own series in the Prometheus text format, and nothing else of the admin API, which stays
// unreachable. The proxy's cost per pod (RSS, CPU per scrape) is measured.
func TestMetricsScrapedFromPodIP(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := namespace(t, s, "metrics")
	dep := deployment("scraped", 1, map[string]string{injectLabel: "true"}, nil, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app=scraped")
	if pod.Status.PodIP == "" {
		t.Fatal("no pod IP")
	}
	base := fmt.Sprintf("http://%s:%d", pod.Status.PodIP, config.MetricsPort)
	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(url string) (int, string, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	// Some traffic first, so that Kratos's request metrics have samples.
	for range 5 {
		if _, _, err := get(fmt.Sprintf("http://%s:%d/health/ready", pod.Status.PodIP, config.PublicPort)); err != nil {
			t.Fatal(err)
		}
	}
	code, body, err := get(base + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %v\n%s", base, code, err, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse as the Prometheus text format: %v", err)
	}
	var names []string
	for name := range families {
		names = append(names, name)
	}
	sort.Strings(names)
	t.Logf("%d metric families from Kratos through %s: %s", len(names), inject.PortNameMetrics, strings.Join(names, " "))
	if families["go_goroutines"] == nil || families["process_resident_memory_bytes"] == nil {
		t.Errorf("Kratos's process metrics missing")
	}
	kratosOwn := 0
	for _, name := range names {
		if strings.HasPrefix(name, "http_") || strings.HasPrefix(name, "ory_") || strings.HasPrefix(name, "kratos_") {
			kratosOwn++
		}
	}
	if kratosOwn == 0 {
		t.Errorf("none of Kratos's own series (http_*, ory_*, kratos_*) in the scrape")
	}

	// Nothing else: the admin API is neither behind the metrics port nor on the pod IP.
	for _, path := range []string{"/admin/identities", "/identities", "/admin/metrics/prometheus", "/"} {
		if code, _, err := get(base + path); err != nil || code != http.StatusNotFound {
			t.Errorf("GET %s%s: %d %v, want 404", base, path, code, err)
		}
	}
	if _, _, err := get(fmt.Sprintf("http://%s:%d/admin/identities", pod.Status.PodIP, config.AdminPort)); err == nil {
		t.Errorf("the admin API answers on the pod IP")
	}

	// The cost of kratos-metrics: its RSS, and its CPU per scrape over 200 scrapes.
	pid := podProcess(string(pod.UID), "metrics-proxy")
	if pid == 0 {
		t.Fatal("no kratos-metrics process on the node")
	}
	cpu0, start := procCPU(pid), time.Now()
	const scrapes = 200
	for range scrapes {
		if code, _, err := get(base + "/metrics"); err != nil || code != http.StatusOK {
			t.Fatalf("scrape: %d %v", code, err)
		}
	}
	cpu := procCPU(pid) - cpu0
	t.Logf("kratos-metrics: RSS %s after %d scrapes of %d KiB; CPU %s per scrape (%d scrapes in %s)",
		mib(procRSS(pid)), scrapes+1, len(body)/1024, (cpu / scrapes).Round(10*time.Microsecond), scrapes, time.Since(start).Round(time.Millisecond))
}
