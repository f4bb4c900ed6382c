package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// newMetricsProxyCmd is the kratos-metrics container: Kratos serves its Prometheus metrics on
// the admin API only, which listens on the pod's loopback so that nothing outside the pod can
// manage identities. This proxy serves GET /metrics, and nothing else, on the pod's IP.
func newMetricsProxyCmd() *cobra.Command {
	var listen, upstream string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "metrics-proxy",
		Short: "Serve Kratos's Prometheus metrics (and only them) on a port of the pod's IP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(upstream)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--upstream=%q: want an http(s) URL", upstream)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			srv := &http.Server{Handler: metricsProxy(u.String(), timeout), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			fmt.Fprintf(cmd.ErrOrStderr(), "serving %s on %s/metrics\n", upstream, ln.Addr())
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", fmt.Sprintf(":%d", config.MetricsPort), "address to serve /metrics on")
	f.StringVar(&upstream, "upstream", config.MetricsUpstream, "Kratos's metrics endpoint")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long one scrape of Kratos may take")
	return cmd
}

// metricsProxy answers GET and HEAD /metrics with what upstream answers, and 404 or 405 to
// anything else: the admin API behind it must stay unreachable.
func metricsProxy(upstream string, timeout time.Duration) http.Handler {
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
