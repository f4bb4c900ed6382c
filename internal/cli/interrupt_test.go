package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/instance/clustertest"
)

// Ctrl-C: cmd/kubectl-kratos cancels Main's context on SIGINT and SIGTERM (signal.NotifyContext).
// A command interrupted so exits 1, as kubectl does for a failed command, with the one line
// "error: interrupted", and leaves nothing running: no request, no port-forward, no goroutine.

// hangingKratos is an admin API stand-in that takes every request and never answers; arrived
// receives each request's method and path; stop releases the requests and closes the stand-in.
func hangingKratos(t *testing.T) (url string, arrived <-chan string, stop func()) {
	t.Helper()
	ch := make(chan string, 16)
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			return
		}
		select {
		case ch <- r.Method + " " + r.URL.Path:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	stop = func() {
		once.Do(func() {
			close(release) // first: srv.Close waits for the handlers
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return srv.URL, ch, stop
}

// interrupted runs `kubectl kratos args...` in-process and cancels its context (Ctrl-C) once a
// request reaches the admin API.
func interrupted(t *testing.T, arrived <-chan string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- cli.Main(ctx, args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	}()
	select {
	case req := <-arrived:
		t.Logf("interrupting %s", req)
	case code := <-done:
		t.Fatalf("the command ended (exit %d) before its request reached the admin API: %s", code, errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("no request reached the admin API within 30s")
	}
	interrupt()
	select {
	case code := <-done:
		return result{code: code, stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	case <-time.After(10 * time.Second):
		t.Fatal("the command still runs 10s after the interrupt")
	}
	return result{}
}

func (r result) interrupted(t *testing.T) {
	t.Helper()
	if r.code != 1 || r.stderr != "error: interrupted\n" || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1, only \"error: interrupted\"", r.code, r.stdout, r.stderr)
	}
}

// noLeftoverGoroutines waits (up to 40 s) until every goroutine not in baseline has ended, and
// fails with the stacks of those that remain.
func noLeftoverGoroutines(t *testing.T, baseline goleak.Option) {
	t.Helper()
	var err error
	// 40 s: client-go's port-forward may still wait for a stream it asked for until its own
	// 30 s createStreamResponseTimeout (k8s.io/streaming spdy) runs out; that goroutine ends by
	// itself, a leak does not.
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = goleak.Find(baseline); err == nil {
			return
		}
	}
	t.Fatalf("goroutines left behind: %v", err)
}

// TestInterruptDirect: Ctrl-C while the admin API (--admin-url) has not answered. (A command
// that completes leaves nothing behind either: its kept-alive connection is closed.)
func TestInterruptDirect(t *testing.T) {
	url, arrived, _ := hangingKratos(t)
	healthy := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) { healthyKratos(w, r) })
	baseline := goleak.IgnoreCurrent()
	kk(t, "", "--admin-url", healthy, "identity", "get", faultID).ok(t, "identity", "get")
	for _, args := range [][]string{
		{"identity", "list"},
		{"identity", "delete", "--email", "ada@example.test"},
		{"identity", "create-admin", "--username", "ada", "--email", "ada@example.test"},
	} {
		r := interrupted(t, arrived, append([]string{"--admin-url", url}, args...)...)
		r.interrupted(t)
		t.Logf("%s: exit %d after %s: %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	}
	noLeftoverGoroutines(t, baseline)
}

// TestInterruptPortForward: Ctrl-C while a request through the port-forward (API server, kwok)
// has not been answered: the command ends, and so does the port-forward.
func TestInterruptPortForward(t *testing.T) {
	url, arrived, stop := hangingKratos(t)
	ns := cluster.Namespace(t, "shop")
	pod := cluster.RunPod(t, clustertest.Pod(ns, "web-7d9f", "web"))
	cluster.Forward(t, pod, 4434, strings.TrimPrefix(url, "http://"))
	waitForward(t, pod, "/ready")
	kubeconfig := cluster.Kubeconfig(t, "admin", ns)
	// A first command sets up what stays for the process's life (client-go's cached transport
	// to the API server and its connection): the baseline.
	kk(t, "", "--kubeconfig", kubeconfig, "status").ok(t, "status")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	baseline := goleak.IgnoreCurrent()
	for _, args := range [][]string{
		{"identity", "get", "--email", "ada@example.test"},
		{"identity", "reset-password", "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"},
	} {
		r := interrupted(t, arrived, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		r.interrupted(t)
		t.Logf("%s: exit %d after %s: %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	}
	// kwok keeps its connections to the stand-in (the pod's side) open: ending those is the
	// stand-in's business, not the plugin's.
	stop()
	noLeftoverGoroutines(t, baseline)
}
