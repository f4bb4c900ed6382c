// Package testbed starts the real components the end-to-end tests run against — etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok, PostgreSQL, Mailpit, Ory Kratos and an nginx
// edge — on 127.0.0.1 and free ports, waits until each is ready, and stops exactly the processes
// it started, by PID. When a component fails to start, the error names it and carries the end of
// its log.
package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bed owns a scratch directory and every process and cleanup registered on it.
type Bed struct {
	Dir string

	mu       sync.Mutex
	cleanups []func()
	procs    []*Proc
	ownsLock bool
}

// New creates a bed rooted at a fresh directory under base (os.TempDir() when empty).
func New(base string) (*Bed, error) {
	dir, err := os.MkdirTemp(base, "kratos-injector-bed-")
	if err != nil {
		return nil, fmt.Errorf("bed dir: %w", err)
	}
	// Postgres runs as the postgres user and must reach its data dir under ours.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	return &Bed{Dir: dir}, nil
}

// Defer registers f to run at Close, in reverse order of registration.
func (b *Bed) Defer(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, f)
}

// Close runs the cleanups (newest first) and stops every process still running. The directory
// is removed unless KEEP_BED is set (then its path is printed, for post-mortems).
func (b *Bed) Close() {
	b.mu.Lock()
	cl := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()
	for i := len(cl) - 1; i >= 0; i-- {
		cl[i]()
	}
	if os.Getenv("KEEP_BED") != "" {
		fmt.Fprintf(os.Stderr, "bed: kept %s\n", b.Dir)
		return
	}
	_ = os.RemoveAll(b.Dir)
}

// Path returns a path inside the bed's directory, creating parent directories.
func (b *Bed) Path(elem ...string) string {
	p := filepath.Join(append([]string{b.Dir}, elem...)...)
	_ = os.MkdirAll(filepath.Dir(p), 0o755)
	return p
}

// Proc is a process the bed started.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	err     error
	stopSig syscall.Signal
}

// Start runs a component with its output in <dir>/logs/<name>.log. It is stopped (SIGTERM, then
// SIGKILL after 10 s) at Close. The process gets its own process group so that a test's Ctrl-C
// does not race with our orderly shutdown.
func (b *Bed) Start(name string, env []string, bin string, args ...string) (*Proc, error) {
	return b.startWith(nil, name, env, bin, args...)
}

// startWith starts a process, as the given user when cred is set.
func (b *Bed) startWith(cred *syscall.Credential, name string, env []string, bin string, args ...string) (*Proc, error) {
	logPath := b.Path("logs", name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	// Pdeathsig: if the test binary dies (a -timeout panic, a kill), its components die with it
	// instead of holding the bed's ports and bridge address for the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	b.recordState()
	b.Defer(func() { p.Stop() })
	return p, nil
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// StopSignal overrides SIGTERM for components whose SIGTERM waits on clients (Postgres).
func (p *Proc) StopSignal(sig syscall.Signal) { p.stopSig = sig }

// Stop ends the process (only this PID) and waits for it.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	sig := syscall.SIGTERM
	if p.stopSig != 0 {
		sig = p.stopSig
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return TailFile(p.LogPath, n) }

// TailFile returns the last n lines of a file.
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitReady polls ready until it returns nil, the process exits, or timeout passes. Failures name
// the component and carry the end of its log.
func (p *Proc) WaitReady(timeout time.Duration, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited before it was ready (%v); end of %s:\n%s", p.Name, p.err, p.LogPath, p.Tail(30)) //nolint:errorlint // may be nil: printed for the reader, not wrapped
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last: %w); end of %s:\n%s", p.Name, timeout, last, p.LogPath, p.Tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) { return FreePortOn("127.0.0.1") }

// FreePortOn returns a TCP port free on the given address.
func FreePortOn(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MustFreePorts returns n distinct free ports.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// run executes a short command and returns its combined output in the error.
func run(name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// output executes a short command and returns its combined output.
func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
