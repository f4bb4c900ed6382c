package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/selfimage"
	"github.com/kratos-injector/kratos-injector/internal/selfsigned"
	"github.com/kratos-injector/kratos-injector/internal/version"
)

// MutatePath is where the MutatingWebhookConfiguration sends pods.
const MutatePath = "/mutate"

const (
	tlsModeFiles      = "files"
	tlsModeSelfSigned = "self-signed"
)

type serveOptions struct {
	bindAddress   string
	port          int
	certDir       string
	metricsAddr   string
	probeAddr     string
	pprofAddr     string
	kratosImage   string
	injectorImage string
	tlsMode       string
	shutdownDelay time.Duration
	selfSigned    selfSignedOptions
	zap           zap.Options
}

// newServeCmd is `webhook serve`: the admission server. The handler makes no API call, so no
// manager (which wants a rest.Config) is built; the webhook, metrics and health servers run side
// by side under one signal context. Only --tls-mode=self-signed talks to the API server, to keep
// its certificate (internal/selfsigned).
func newServeCmd() *cobra.Command {
	o := &serveOptions{
		port:          webhook.DefaultPort,
		certDir:       filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		metricsAddr:   ":8080",
		probeAddr:     ":8081",
		pprofAddr:     "0",
		kratosImage:   inject.DefaultKratosImage,
		tlsMode:       tlsModeFiles,
		shutdownDelay: 5 * time.Second,
		selfSigned:    defaultSelfSignedOptions(),
	}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mutating admission webhook server",
		Long: `Serve the admission webhook at ` + MutatePath + ` over TLS (the certificate in --cert-dir is
reloaded when it changes), Prometheus metrics on --metrics-bind-address and /healthz, /readyz on
--health-probe-bind-address. On SIGTERM it turns unready, keeps serving for --shutdown-delay so
the API server stops sending requests, then drains and exits.

--tls-mode=files (default) serves tls.crt and tls.key from --cert-dir (cert-manager's Secret).
--tls-mode=self-signed keeps a CA and a serving certificate in one Secret shared by the replicas
(ECDSA P-256; CA 10 years, serving 1 year, each renewed with a third of its validity left),
writes the serving pair into --cert-dir, and patches the caBundle of --webhook-config-name;
/readyz fails until the certificate is in place. ` + "`webhook tls renew [--ca]`" + ` forces a renewal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			logf.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
			return o.run(signals.SetupSignalHandler())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.bindAddress, "bind-address", o.bindAddress, "IP address the webhook server listens on (empty: all interfaces)")
	fs.StringVar(&o.bindAddress, "host", o.bindAddress, "alias of --bind-address (controller-runtime's webhook.Options.Host)")
	_ = fs.MarkHidden("host")
	fs.IntVar(&o.port, "port", o.port, "port of the webhook server")
	fs.StringVar(&o.certDir, "cert-dir", o.certDir, "directory holding the serving certificate tls.crt and key tls.key (watched for rotation)")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", o.metricsAddr, `address of the Prometheus metrics endpoint /metrics ("0" disables it)`)
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", o.probeAddr, `address of /healthz and /readyz ("0" disables them)`)
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", o.pprofAddr, `address of Go's /debug/pprof/ endpoints, for profiling under load ("0", the default, disables them; they expose the process's memory: loopback only)`)
	fs.StringVar(&o.kratosImage, "kratos-image", o.kratosImage, "Kratos image injected when a pod has no "+inject.AnnotationImage+" annotation")
	fs.StringVar(&o.injectorImage, "injector-image", o.injectorImage, "image of the injected kratos-config init container (default: this webhook's own image, read from its pod "+
		"$"+selfimage.PodNamespaceEnv+"/$"+selfimage.PodNameEnv+"; outside a pod "+inject.DefaultInjectorImage+")")
	fs.StringVar(&o.tlsMode, "tls-mode", o.tlsMode, "where the serving certificate comes from: files (--cert-dir, e.g. from cert-manager) or self-signed (kept by this webhook in a Secret)")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", o.shutdownDelay, "how long to keep serving, unready, after SIGTERM before draining")
	o.selfSigned.addFlags(fs)
	gofs := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.zap.BindFlags(gofs)
	fs.AddGoFlagSet(gofs)
	return cmd
}

// pprofEnabled: --pprof-bind-address is neither "0" nor empty.
func (o *serveOptions) pprofEnabled() bool { return o.pprofAddr != "0" && o.pprofAddr != "" }

func (o *serveOptions) validate() error {
	switch o.tlsMode {
	case tlsModeFiles:
	case tlsModeSelfSigned:
		if err := o.selfSigned.validate(o.certDir); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--tls-mode %q: want files or self-signed", o.tlsMode)
	}
	if o.pprofEnabled() {
		if host, _, err := net.SplitHostPort(o.pprofAddr); err != nil {
			return fmt.Errorf("--pprof-bind-address: %w", err)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--pprof-bind-address %s: want a loopback address (profiles expose the process's memory)", o.pprofAddr)
		}
	}
	if o.port <= 0 || o.port > 65535 {
		return fmt.Errorf("--port %d: want 1-65535", o.port)
	}
	if err := inject.ValidImage(o.kratosImage); err != nil {
		return fmt.Errorf("--kratos-image: %w", err)
	}
	if o.injectorImage != "" {
		if err := inject.ValidImage(o.injectorImage); err != nil {
			return fmt.Errorf("--injector-image: %w", err)
		}
	}
	return nil
}

// resolveInjectorImage defaults --injector-image to the image this webhook runs from, read from
// its own pod (named by the downward API env vars the manifests set), so that the injected
// kratos-config container can never run another image than the webhook, however the image was
// overridden. Outside a pod (no env vars) it is inject.DefaultInjectorImage, this version's
// released image.
func (o *serveOptions) resolveInjectorImage(ctx context.Context, log logr.Logger) error {
	if o.injectorImage != "" {
		return nil
	}
	pod, ns := os.Getenv(selfimage.PodNameEnv), os.Getenv(selfimage.PodNamespaceEnv)
	if pod == "" || ns == "" {
		o.injectorImage = inject.DefaultInjectorImage
		log.Info("not in a pod: the injector image is this version's", "injectorImage", o.injectorImage)
		return nil
	}
	cfg, err := restConfig(o.selfSigned.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	img, err := selfimage.OwnImage(ctx, client, ns, pod, selfimage.Container)
	if err != nil {
		return err
	}
	if err := inject.ValidImage(img); err != nil {
		return fmt.Errorf("own image %q: %w", img, err)
	}
	o.injectorImage = img
	log.Info("injector image is the webhook's own", "pod", ns+"/"+pod, "injectorImage", img)
	return nil
}

// run serves until ctx ends (the first SIGTERM or SIGINT; a second one exits at once) or a
// server fails.
func (o *serveOptions) run(ctx context.Context) error {
	log := logf.Log.WithName("serve")
	if err := o.resolveInjectorImage(ctx, log); err != nil {
		return err
	}
	log.Info("starting", "version", version.Version, "kratosImage", o.kratosImage, "injectorImage", o.injectorImage,
		"bindAddress", o.bindAddress, "port", o.port, "certDir", o.certDir, "tlsMode", o.tlsMode)

	hookServer := webhook.NewServer(webhook.Options{
		Host: o.bindAddress, Port: o.port,
		CertDir: o.certDir, CertName: "tls.crt", KeyName: "tls.key",
	})
	// inject.Webhook answers as controller-runtime's admission.Webhook, at less cost.
	hookServer.Register(MutatePath, inject.NewWebhook(inject.NewHandler(inject.Options{
		InjectorImage: o.injectorImage,
		KratosImage:   o.kratosImage,
		Version:       version.Version,
	})))
	var certs *selfsigned.Manager
	if o.tlsMode == tlsModeSelfSigned {
		var err error
		if certs, err = o.selfSigned.newManager(o.certDir, logf.Log.WithName("self-signed")); err != nil {
			return err
		}
	}

	// Servers stop on serveCtx, which ends shutdownDelay after ctx: meanwhile /readyz fails, the
	// endpoint leaves the Service, and requests already routed here are still answered (with
	// failurePolicy Fail a refused connection would deny a pod).
	serveCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var shuttingDown atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
			shuttingDown.Store(true)
			log.Info("signal received: unready now, draining after the shutdown delay", "delay", o.shutdownDelay.String())
			select {
			case <-time.After(o.shutdownDelay):
			case <-serveCtx.Done(): // a server failed meanwhile
			}
			stop()
		case <-serveCtx.Done():
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(serveCtx); err != nil {
				log.Error(err, "server failed, stopping", "server", name)
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", name, err)
				}
				mu.Unlock()
				stop()
			}
		}()
	}

	if certs != nil {
		// The webhook server reads the certificate when it starts: it starts once it is in place.
		start("self-signed certificate", certs.Run)
		start("webhook server", func(ctx context.Context) error {
			select {
			case <-certs.Synced():
				return hookServer.Start(ctx)
			case <-ctx.Done():
				return nil
			}
		})
	} else {
		start("webhook server", hookServer.Start)
	}
	if o.metricsAddr != "0" {
		metricsServer, err := metricsserver.NewServer(metricsserver.Options{BindAddress: o.metricsAddr}, nil, nil)
		if err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
		start("metrics server", metricsServer.Start)
	}
	if o.pprofEnabled() {
		start("pprof server", func(ctx context.Context) error { return servePprof(ctx, log, o.pprofAddr) })
	}
	if o.probeAddr != "0" {
		started := hookServer.StartedChecker()
		ready := map[string]healthz.Checker{
			"webhook": func(r *http.Request) error {
				if certs != nil { // self-signed: the certificate first (the server waits for it)
					if err := certs.ReadyCheck(r); err != nil {
						return err
					}
				}
				return started(r)
			},
			"shutdown": func(*http.Request) error {
				if shuttingDown.Load() {
					return errors.New("shutting down")
				}
				return nil
			},
		}
		start("health probe server", func(ctx context.Context) error { return serveProbes(ctx, log, o.probeAddr, ready) })
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	log.Info("stopped")
	return nil
}

// serveProbes serves /healthz (the process answers) and /readyz (the webhook accepts TLS
// connections and no shutdown is under way), as controller-runtime's manager would.
func serveProbes(ctx context.Context, log logr.Logger, addr string, ready map[string]healthz.Checker) error {
	live := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
	readyz := &healthz.Handler{Checks: ready}
	mux := http.NewServeMux()
	mux.Handle("/healthz", http.StripPrefix("/healthz", live))
	mux.Handle("/healthz/", http.StripPrefix("/healthz", live))
	mux.Handle("/readyz", http.StripPrefix("/readyz", readyz))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", readyz))
	return serveHTTP(ctx, log, "health probes", addr, mux)
}

// servePprof serves net/http/pprof's handlers under /debug/pprof/ (the load harness's
// -profile reads CPU profiles there). The mux is our own: net/http/pprof's init registers on
// http.DefaultServeMux, which nothing here serves.
func servePprof(ctx context.Context, log logr.Logger, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveHTTP(ctx, log, "pprof", addr, mux)
}

// serveHTTP serves h over plain HTTP on addr until ctx ends.
func serveHTTP(ctx context.Context, log logr.Logger, what, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	}()
	log.Info("serving "+what, "address", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
