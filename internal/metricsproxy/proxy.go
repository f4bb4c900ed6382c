// Package metricsproxy serves Kratos's Prometheus metrics, and nothing else of its admin API,
// on a port of the pod's IP. Kratos serves its metrics on the admin API only, which listens on
// the pod's loopback so that nothing outside the pod can manage identities.
package metricsproxy

import (
	"io"
	"net/http"
	"time"
)

// Handler answers GET and HEAD /metrics with what upstream answers, and 404 or 405 to
// anything else: the admin API behind it must stay unreachable.
func Handler(upstream string, timeout time.Duration) http.Handler {
	client := &http.Client{Timeout: timeout}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream, nil)
		if err != nil {
			http.Error(w, "bad upstream", http.StatusInternalServerError)
			return
		}
		// Content negotiation (text or protobuf exposition format) is Prometheus's to make.
		if a := r.Header.Get("Accept"); a != "" {
			req.Header.Set("Accept", a)
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "Kratos's metrics are unavailable: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "Content-Encoding"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	return mux
}

// Port is where kratos-metrics serves, and Upstream where Kratos serves its metrics (the
// admin API, in the pod).
const (
	Port     = 4435
	Upstream = "http://127.0.0.1:4434/admin/metrics/prometheus"
)
