// Package harness is the admission load harness behind `make bench` (hack/loadtest): it starts
// each server under test as its own process, one at a time, sends it the same Pod CREATE
// review with vegeta over TLS and HTTP/2 with keep-alive, as the API server calls a webhook,
// first at maximum throughput with a fixed number of workers and then at a fixed rate, and
// reports throughput, latency, the server's CPU per review and peak RSS, and errors, next to
// two baselines (see docs/architecture.md, 'Performance').
package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Config is one run of the harness.
type Config struct {
	// Servers to measure, in order (default Servers).
	Servers []string
	// Duration of each phase, per server (default 10s).
	Duration time.Duration
	// Warmup at maximum throughput before the measured phases, not measured (default 1s).
	Warmup time.Duration
	// Rate of the fixed-rate phase, reviews/s (default 1000).
	Rate int
	// Workers of the maximum-throughput phase: the number of reviews in flight (default 32).
	Workers int
	// Self is the command that runs a baseline server: it is given -server, -addr and
	// -cert-dir (see ServeMain). Default: this executable.
	Self []string
	// Webhook is the `webhook` binary to measure; empty: built from ./cmd/webhook into WorkDir
	// as `make build` builds it.
	Webhook string
	// Review is the AdmissionReview sent (default DefaultReview).
	Review []byte
	// WorkDir holds the certificate, the built binary and the servers' logs; empty: a
	// temporary directory, removed afterwards.
	WorkDir string
	// Log receives progress lines (default: discarded).
	Log io.Writer
	// ProfileDir, when set, receives a CPU profile of each server over each measured phase,
	// <server>-max.pprof and <server>-fixed.pprof, read from the server's pprof endpoint on
	// loopback (`webhook serve --pprof-bind-address`, the baselines' -pprof-addr). Profiling
	// costs the server some CPU: the figures of such a run are not comparable with others.
	ProfileDir string
}

// Phase is one measured attack on one server.
type Phase struct {
	Requests   int
	OK         int           // 200 with a valid review
	Errors     int           // transport errors, other statuses, invalid reviews
	FirstError string        // the first of them
	Throughput float64       // OK per second
	Rate       float64       // requests sent per second
	P50, P99   time.Duration // latency, all requests
	CPU        time.Duration // the server's user+system CPU over the phase
}

// CPUPer1k is the server's CPU time per 1,000 reviews answered.
func (p Phase) CPUPer1k() time.Duration {
	if p.Requests == 0 {
		return 0
	}
	return p.CPU * 1000 / time.Duration(p.Requests)
}

// Row is one server's results.
type Row struct {
	Server  string
	Max     Phase // maximum throughput, Config.Workers in flight
	Fixed   Phase // Config.Rate per second
	PeakRSS int64 // bytes, VmHWM at the end of the run
}

// Errors counts both phases' errors.
func (r Row) Errors() int { return r.Max.Errors + r.Fixed.Errors }

// Report is a run's results.
type Report struct {
	Config      Config
	ReviewBytes int
	Rows        []Row
}

func (c *Config) setDefaults() error {
	if len(c.Servers) == 0 {
		c.Servers = Servers
	}
	for _, s := range c.Servers {
		if !slices.Contains(Servers, s) {
			return fmt.Errorf("unknown server %q: want some of %v", s, Servers)
		}
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 1000
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if len(c.Self) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.Self = []string{exe}
	}
	if c.Review == nil {
		c.Review = DefaultReview
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Run measures each server of cfg in turn.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	rv, err := parseReview(cfg.Review)
	if err != nil {
		return nil, err
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "kratos-injector-loadtest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	certDir := filepath.Join(cfg.WorkDir, "certs")
	ca, err := writeCerts(certDir)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if slices.Contains(cfg.Servers, Injector) && cfg.Webhook == "" {
		fmt.Fprintln(cfg.Log, "building ./cmd/webhook")
		if cfg.Webhook, err = buildWebhook(ctx, cfg.WorkDir); err != nil {
			return nil, err
		}
	}
	rep := &Report{Config: cfg, ReviewBytes: len(rv.body)}
	for _, name := range cfg.Servers {
		row, err := runServer(ctx, &cfg, name, rv, certDir, ca)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

// buildWebhook builds cmd/webhook as `make build` does (static, trimmed, stripped).
func buildWebhook(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "webhook")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out,
		"github.com/kratos-injector/kratos-injector/cmd/webhook")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/webhook: %w\n%s", err, b)
	}
	return out, nil
}

// argv is the command line of server name listening on port, with its pprof endpoint on
// pprofAddr unless that is empty.
func argv(cfg *Config, name string, port int, certDir, pprofAddr string) ([]string, error) {
	if name != Injector {
		args := append(slices.Clone(cfg.Self), "-server", name, "-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "-cert-dir", certDir)
		if pprofAddr != "" {
			args = append(args, "-pprof-addr", pprofAddr)
		}
		return args, nil
	}
	metrics, err := freePort()
	if err != nil {
		return nil, err
	}
	probes, err := freePort()
	if err != nil {
		return nil, err
	}
	// As deployed (manifests/base/deployment.yaml), on loopback; no shutdown delay.
	args := []string{cfg.Webhook, "serve", "--bind-address", "127.0.0.1", "--port", strconv.Itoa(port), "--cert-dir", certDir,
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metrics), "--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probes),
		"--shutdown-delay", "0"}
	if pprofAddr != "" {
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	return args, nil
}

func runServer(ctx context.Context, cfg *Config, name string, rv *review, certDir string, ca *x509.Certificate) (Row, error) {
	row := Row{Server: name}
	port, err := freePort()
	if err != nil {
		return row, err
	}
	var pprofAddr string
	if cfg.ProfileDir != "" {
		p, err := freePort()
		if err != nil {
			return row, err
		}
		pprofAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	args, err := argv(cfg, name, port, certDir, pprofAddr)
	if err != nil {
		return row, err
	}
	proc, err := startProcess(name, filepath.Join(cfg.WorkDir, name+".log"), args)
	if err != nil {
		return row, err
	}
	defer proc.stop()
	fmt.Fprintf(cfg.Log, "%s: started, pid %d\n", name, proc.pid())

	// One client per server: its HTTP/2 connection is opened once and kept for every phase.
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := &http.Client{
		Timeout: 10 * time.Second, // the webhook configuration's timeoutSeconds at most
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     90 * time.Second,
			DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		},
	}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d%s?timeout=10s", port, MutatePath) // the API server adds ?timeout
	a := &attacker{
		client: client, proc: proc, pprofAddr: pprofAddr, check: &checker{validate: validatorFor(name, rv)},
		target: vegeta.Target{Method: http.MethodPost, URL: url, Body: rv.body,
			Header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, */*"}}},
	}
	if err := a.waitReady(ctx); err != nil {
		return row, err
	}

	if cfg.Warmup > 0 {
		fmt.Fprintf(cfg.Log, "%s: warm-up, %s at maximum throughput\n", name, cfg.Warmup)
		w, err := a.attack(ctx, vegeta.Rate{}, cfg.Workers, uint64(cfg.Workers), cfg.Warmup)
		if err != nil {
			return row, err
		}
		if w.Errors > 0 {
			fmt.Fprintf(cfg.Log, "%s: %d errors during the warm-up, the first: %s\n", name, w.Errors, w.FirstError)
		}
	}
	fmt.Fprintf(cfg.Log, "%s: %s at maximum throughput, %d workers\n", name, cfg.Duration, cfg.Workers)
	a.profile = profilePath(cfg, name, "max")
	if row.Max, err = a.attack(ctx, vegeta.Rate{}, cfg.Workers, uint64(cfg.Workers), cfg.Duration); err != nil {
		return row, err
	}
	fmt.Fprintf(cfg.Log, "%s: %s at %d/s\n", name, cfg.Duration, cfg.Rate)
	a.profile = profilePath(cfg, name, "fixed")
	if row.Fixed, err = a.attack(ctx, vegeta.Rate{Freq: cfg.Rate, Per: time.Second}, cfg.Workers, vegeta.DefaultMaxWorkers, cfg.Duration); err != nil {
		return row, err
	}
	if err := a.alive(); err != nil {
		return row, err
	}
	row.PeakRSS, err = peakRSS(proc.pid())
	return row, err
}

type attacker struct {
	client *http.Client
	proc   *process
	check  *checker
	target vegeta.Target
	// pprofAddr is the server's pprof endpoint, profile where the next attack's CPU profile
	// goes: none when either is empty.
	pprofAddr, profile string
}

func profilePath(cfg *Config, server, phase string) string {
	if cfg.ProfileDir == "" {
		return ""
	}
	return filepath.Join(cfg.ProfileDir, server+"-"+phase+".pprof")
}

// alive fails if the server has exited.
func (a *attacker) alive() error {
	if a.proc.exited() {
		return fmt.Errorf("exited during the run (%w):\n%s", a.proc.exitStatus(), a.proc.tail())
	}
	return nil
}

// waitReady sends the review until the server answers it (at most 30s), and requires that
// first answer to be valid and over HTTP/2.
func (a *attacker) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := a.target.Request()
		if err != nil {
			return err
		}
		resp, err := a.client.Do(req.WithContext(ctx))
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				return rerr
			case resp.ProtoMajor != 2:
				return fmt.Errorf("answered over %s, want HTTP/2 (the API server's protocol)", resp.Proto)
			}
			if err := a.check.check(uint16(resp.StatusCode), "", body); err != nil {
				return fmt.Errorf("first answer: %w", err)
			}
			return nil
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case a.proc.exited():
			return fmt.Errorf("exited before answering (%w):\n%s", a.proc.exitStatus(), a.proc.tail())
		case time.Now().After(deadline):
			return fmt.Errorf("no answer after 30s (%w):\n%s", err, a.proc.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// attack runs one vegeta attack at rate (zero: as fast as workers allow) and measures it.
func (a *attacker) attack(ctx context.Context, rate vegeta.Rate, workers int, maxWorkers uint64, d time.Duration) (Phase, error) {
	var ph Phase
	// The client's transport is shared by the phases (its connection is kept), so no vegeta
	// option that rewrites the transport (KeepAlive, HTTP2, TLSConfig) is used here: it is
	// configured once, keep-alive and HTTP/2 on, in runServer.
	atk := vegeta.NewAttacker(vegeta.Client(a.client), vegeta.Workers(uint64(workers)), vegeta.MaxWorkers(maxWorkers), vegeta.MaxBody(-1))
	cpu0, err := CPUTime(a.proc.pid())
	if err != nil {
		return ph, err
	}
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	profiled := a.startProfile(ctx, d)
	var m vegeta.Metrics
	for res := range atk.Attack(vegeta.NewStaticTargeter(a.target), rate, d, "") {
		m.Add(res)
		if err := a.check.check(res.Code, res.Error, res.Body); err != nil {
			ph.Errors++
			if ph.FirstError == "" {
				ph.FirstError = err.Error()
			}
		} else {
			ph.OK++
		}
	}
	m.Close()
	if err := a.alive(); err != nil {
		return ph, err
	}
	if err := <-profiled; err != nil {
		return ph, fmt.Errorf("CPU profile: %w", err)
	}
	cpu1, err := CPUTime(a.proc.pid())
	if err != nil {
		return ph, err
	}
	if err := ctx.Err(); err != nil {
		return ph, err
	}
	if m.Requests == 0 {
		return ph, errors.New("no request was sent")
	}
	ph.Requests = int(m.Requests)
	ph.Rate = m.Rate
	if span := (m.Duration + m.Wait).Seconds(); span > 0 {
		ph.Throughput = float64(ph.OK) / span
	}
	ph.P50, ph.P99 = m.Latencies.P50, m.Latencies.P99
	ph.CPU = cpu1 - cpu0
	return ph, nil
}

// startProfile fetches a CPU profile of the server over the next d into a.profile, in the
// background; the channel gives its outcome (at once when no profile is wanted).
func (a *attacker) startProfile(ctx context.Context, d time.Duration) <-chan error {
	done := make(chan error, 1)
	if a.pprofAddr == "" || a.profile == "" {
		done <- nil
		return done
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	go func() {
		done <- func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", a.pprofAddr, secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("%s: %s", resp.Status, b)
			}
			if err := os.MkdirAll(filepath.Dir(a.profile), 0o755); err != nil {
				return err
			}
			f, err := os.Create(a.profile)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}()
	}()
	return done
}
