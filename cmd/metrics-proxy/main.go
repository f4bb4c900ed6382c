// Command metrics-proxy is the injected kratos-metrics container (in the injector image): it
// serves GET /metrics from Kratos's admin API on a port of the pod's IP. It is its own small
// binary, with nothing but the standard library, because it runs in every injected pod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/metricsproxy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("metrics-proxy", flag.ContinueOnError)
	listen := fs.String("listen", fmt.Sprintf(":%d", metricsproxy.Port), "address to serve /metrics on")
	upstream := fs.String("upstream", metricsproxy.Upstream, "Kratos's metrics endpoint")
	timeout := fs.Duration("timeout", 10*time.Second, "how long one scrape of Kratos may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	u, err := url.Parse(*upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--upstream=%q: want an http(s) URL", *upstream)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &http.Server{Handler: metricsproxy.Handler(u.String(), *timeout), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "serving %s on %s/metrics\n", u, ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
