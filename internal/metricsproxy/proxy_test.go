package metricsproxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/metricsproxy"
)

// The proxy passes the metrics through and nothing else of the admin API behind it.
func TestMetricsProxy(t *testing.T) {
	var paths []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path)
		if r.URL.Path != "/admin/metrics/prometheus" {
			http.Error(w, "admin API", http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "kratos_up 1\n")
	}))
	defer admin.Close()
	proxy := httptest.NewServer(metricsproxy.Handler(admin.URL+"/admin/metrics/prometheus", time.Second))
	defer proxy.Close()

	get := func(method, path string) (int, string, string) {
		req, _ := http.NewRequest(method, proxy.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, ct, body := get(http.MethodGet, "/metrics"); code != 200 || body != "kratos_up 1\n" || !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics = %d %q %q", code, ct, body)
	}
	for _, p := range []string{"/admin/identities", "/metrics/../admin/identities", "/identities", "/", "/metricsx"} {
		if code, _, _ := get(http.MethodGet, p); code != http.StatusNotFound && code != http.StatusMovedPermanently {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodDelete, http.MethodPut} {
		if code, _, _ := get(m, "/metrics"); code != http.StatusMethodNotAllowed {
			t.Errorf("%s /metrics = %d, want 405", m, code)
		}
	}
	for _, p := range paths {
		if p != "GET /admin/metrics/prometheus" {
			t.Errorf("the admin API received %q", p)
		}
	}
	admin.Close()
	if code, _, _ := get(http.MethodGet, "/metrics"); code != http.StatusBadGateway {
		t.Errorf("GET /metrics with Kratos down = %d, want 502", code)
	}
}
