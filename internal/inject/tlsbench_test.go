package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The admission path over TLS on loopback with HTTP/2 and keep-alive, as the API server calls it,
// measured against two baselines in the same run (see docs/architecture.md, 'Performance'): a bare net/http TLS handler that
// answers a fixed allow, and controller-runtime's admission webhook whose handler allows
// everything unchanged (the stack's own limit). Run with `make bench`; compare reviews/s and
// p99-ms of the three sub-benchmarks.

func tlsServers() map[string]http.Handler {
	allowed := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"0b9c3fb4-0000-4000-8000-000000000000","allowed":true}}`)
	return map[string]http.Handler{
		"bare": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(allowed)
		}),
		"allow-all": &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			return admission.Allowed("")
		})},
		"kratos-injector": &admission.Webhook{Handler: NewHandler(testOptions)},
	}
}

func reviewBody(b *testing.B) []byte {
	req := request(b, labelledPod(typicalPod()))
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: &req.AdmissionRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func startTLS(b *testing.B, h http.Handler) (*httptest.Server, *http.Client) {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	b.Cleanup(srv.Close)
	c := srv.Client()
	c.Timeout = 10 * time.Second
	return srv, c
}

func post(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &httpError{resp.Status}
	}
	return err
}

type httpError struct{ status string }

func (e *httpError) Error() string { return e.status }

// BenchmarkTLSThroughput: maximum reviews/s with 16 concurrent streams over one HTTP/2 connection.
func BenchmarkTLSThroughput(b *testing.B) {
	body := reviewBody(b)
	for _, name := range []string{"bare", "allow-all", "kratos-injector"} {
		b.Run(name, func(b *testing.B) {
			srv, c := startTLS(b, tlsServers()[name])
			url := srv.URL + "/mutate"
			if err := post(c, url, body); err != nil { // warm the connection
				b.Fatal(err)
			}
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := post(c, url, body); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reviews/s")
		})
	}
}

// BenchmarkTLSLatencyAt1000: p99 latency of reviews sent open-loop at 1,000/s.
func BenchmarkTLSLatencyAt1000(b *testing.B) {
	body := reviewBody(b)
	for _, name := range []string{"bare", "allow-all", "kratos-injector"} {
		b.Run(name, func(b *testing.B) {
			srv, c := startTLS(b, tlsServers()[name])
			url := srv.URL + "/mutate"
			if err := post(c, url, body); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				<-tick.C
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					t0 := time.Now()
					if err := post(c, url, body); err != nil {
						b.Error(err)
					}
					lat[i] = time.Since(t0)
				}(i)
			}
			wg.Wait()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		})
	}
}
