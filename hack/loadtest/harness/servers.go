package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The servers the harness knows, in the order it runs them.
const (
	// Bare is a net/http TLS server answering every request with one fixed allow review: the
	// cost of TLS, HTTP/2 and reading the body, nothing else.
	Bare = "bare"
	// AllowAll is controller-runtime's webhook server, with the TLS setup of `webhook serve`,
	// and an admission handler that allows everything unchanged: the stack's own limit.
	AllowAll = "allow-all"
	// Injector is the real `webhook serve` binary.
	Injector = "kratos-injector"
	// FixedPatch is allow-all answering every review with one fixed JSON patch (-patch): the
	// stack's cost plus that of a mutation of the injector's size, without its logic. Not in
	// the harness's table: the API server, which applies the patch, is where it differs.
	FixedPatch = "fixed-patch"
)

// Servers is every server, in the order of the table.
var Servers = []string{Bare, AllowAll, Injector}

// MutatePath is where every server answers reviews, as `webhook serve` does.
const MutatePath = "/mutate"

// bareAllow is the bare server's one answer.
var bareAllow = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"0b9c3fb4-0000-4000-8000-000000000000","allowed":true}}`)

// ServeMain runs one baseline server as its own process until SIGTERM or SIGINT:
//
//	-server bare|allow-all|fixed-patch -addr 127.0.0.1:PORT -cert-dir DIR [-patch FILE] [-pprof-addr 127.0.0.1:PORT]
//
// The harness starts it through Config.Self; the harness command and its test binary both
// dispatch to it when their first argument is -server.
func ServeMain(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	kind := fs.String("server", "", "baseline server to run: "+Bare+" or "+AllowAll)
	addr := fs.String("addr", "127.0.0.1:9443", "address to listen on")
	certDir := fs.String("cert-dir", "", "directory holding tls.crt and tls.key")
	pprofAddr := fs.String("pprof-addr", "", "address of a /debug/pprof/ endpoint (empty: none)")
	patchFile := fs.String("patch", "", "JSON patch file the "+FixedPatch+" server answers with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *pprofAddr != "" {
		if err := servePprof(ctx, *pprofAddr); err != nil {
			return err
		}
	}
	switch *kind {
	case Bare:
		return serveBare(ctx, *addr, *certDir)
	case AllowAll:
		return serveAllowAll(ctx, *addr, *certDir, nil)
	case FixedPatch:
		patch, err := os.ReadFile(*patchFile)
		if err != nil {
			return fmt.Errorf("-patch: %w", err)
		}
		if !json.Valid(patch) || len(patch) == 0 || patch[0] != '[' {
			return fmt.Errorf("-patch %s: not a JSON patch (a JSON array of operations)", *patchFile)
		}
		return serveAllowAll(ctx, *addr, *certDir, patch)
	default:
		return fmt.Errorf("-server %q: want %s, %s or %s", *kind, Bare, AllowAll, FixedPatch)
	}
}

// servePprof serves net/http/pprof's handlers on addr until ctx ends, in the background.
func servePprof(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	go func() { _ = srv.Serve(ln) }()
	return nil
}

func serveBare(ctx context.Context, addr, certDir string) error {
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc(MutatePath, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(bareAllow)
	})
	srv := &http.Server{
		Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12},
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveAllowAll builds the webhook server as `webhook serve` does (cmd/webhook/serve.go), with
// an allow-all handler in place of the injector's.
func serveAllowAll(ctx context.Context, addr, certDir string, patch []byte) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", addr, err)
	}
	logf.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{})))
	srv := webhook.NewServer(webhook.Options{Host: host, Port: p, CertDir: certDir, CertName: "tls.crt", KeyName: "tls.key"})
	jsonPatch := admissionv1.PatchTypeJSONPatch
	srv.Register(MutatePath, &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		r := admission.Allowed("")
		// Idempotent as the injector is: a pod it already patched (reinvoked after the API
		// server's own plugins changed it) is left alone.
		if patch != nil && !bytes.Contains(req.Object.Raw, []byte(`"kratos-injector.io/status"`)) {
			r.Patch, r.PatchType = patch, &jsonPatch
		}
		return r
	})})
	return srv.Start(ctx)
}
