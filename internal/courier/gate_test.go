package courier_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/courier"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The gates run against a real Postgres (the bed's); their courier is a shell loop that keeps
// a marker file while it runs, so the test sees which gates dispatch at every moment.

var (
	pg  *testbed.Postgres
	bed *testbed.Bed
)

func TestMain(m *testing.M) {
	var err error
	if bed, err = testbed.New(""); err == nil {
		pg, err = bed.StartPostgres(testbed.PostgresOptions{})
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
	} else {
		code = m.Run()
	}
	if bed != nil {
		bed.Close()
	}
	os.Exit(code)
}

// fakeCourier is a command that keeps marker while it runs and removes it when stopped.
func fakeCourier(marker string) []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf(`touch %[1]q; trap 'rm -f %[1]q; exit 0' TERM; while :; do sleep 0.05; done`, marker)}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type gates struct {
	dir     string
	cancels []context.CancelFunc
	done    []chan struct{}
	logs    []*syncBuffer
}

func startGates(t *testing.T, dsn string, n int) *gates {
	t.Helper()
	g := &gates{dir: t.TempDir()}
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		log := &syncBuffer{}
		gate := &courier.Gate{DSN: dsn, Command: fakeCourier(filepath.Join(g.dir, fmt.Sprintf("pod-%d", i))),
			Pod: fmt.Sprintf("pod-%d", i), Retry: 200 * time.Millisecond, Grace: 2 * time.Second, Log: log, Stdout: log, Stderr: log}
		go func() {
			defer close(done)
			if err := gate.Run(ctx); err != nil {
				t.Errorf("gate %d: %v", i, err)
			}
		}()
		g.cancels, g.done, g.logs = append(g.cancels, cancel), append(g.done, done), append(g.logs, log)
	}
	t.Cleanup(func() {
		for i := range g.cancels {
			g.cancels[i]()
			<-g.done[i]
		}
	})
	return g
}

// running lists the pods whose courier runs.
func (g *gates) running() []string {
	m, _ := filepath.Glob(filepath.Join(g.dir, "pod-*"))
	var out []string
	for _, p := range m {
		out = append(out, filepath.Base(p))
	}
	return out
}

// watch samples every 5 ms until stop is closed and returns the most couriers seen at once.
func (g *gates) watch(stop <-chan struct{}) <-chan int {
	most := make(chan int, 1)
	go func() {
		m := 0
		for {
			select {
			case <-stop:
				most <- m
				return
			case <-time.After(5 * time.Millisecond):
				m = max(m, len(g.running()))
			}
		}
	}()
	return most
}

func (g *gates) waitHolder(t *testing.T, not string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if r := g.running(); len(r) == 1 && r[0] != not {
			return r[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single courier other than %q within %s: %v", not, timeout, g.running())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newDatabase(t *testing.T, prefix string) string {
	t.Helper()
	db, err := pg.NewDatabase(context.Background(), prefix, "")
	if err != nil {
		t.Fatal(err)
	}
	return db.DSN(pg.Host)
}

// Three gates on one database: exactly one courier runs, Holder names its pod, and when that
// gate stops (pod deleted) another takes over; at no moment do two couriers run.
func TestOneCourierAndHandover(t *testing.T) {
	dsn := newDatabase(t, "gate")
	g := startGates(t, dsn, 3)
	stop := make(chan struct{})
	most := g.watch(stop)

	first := g.waitHolder(t, "", 10*time.Second)
	time.Sleep(time.Second) // the two others keep trying meanwhile
	holder, err := courier.Holder(context.Background(), dsn)
	if err != nil || holder != first {
		t.Fatalf("Holder = %q, %v; want %q", holder, err, first)
	}
	var idx int
	if _, err := fmt.Sscanf(first, "pod-%d", &idx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	g.cancels[idx]()
	<-g.done[idx]
	second := g.waitHolder(t, first, 10*time.Second)
	t.Logf("%s stopped; %s dispatches %s later", first, second, time.Since(start).Round(time.Millisecond))
	if h, err := courier.Holder(context.Background(), dsn); err != nil || h != second {
		t.Errorf("Holder = %q, %v; want %q", h, err, second)
	}
	close(stop)
	if m := <-most; m != 1 {
		t.Errorf("%d couriers ran at once, want 1", m)
	}
	// Another database has its own courier.
	other := startGates(t, newDatabase(t, "gateother"), 1)
	other.waitHolder(t, "", 10*time.Second)
}

// Postgres ends the holder's session (as when its connection is cut or the server restarts):
// the holder stops its courier before, or as, another gate takes over; never two at once.
func TestSessionLostStopsCourier(t *testing.T) {
	dsn := newDatabase(t, "gatelost")
	g := startGates(t, dsn, 2)
	stop := make(chan struct{})
	most := g.watch(stop)
	first := g.waitHolder(t, "", 10*time.Second)
	ctx := context.Background()
	if _, err := pg.SQL(ctx, "postgres", fmt.Sprintf(
		"select pg_terminate_backend(pid) from pg_stat_activity where application_name = '%s%s'", courier.ApplicationPrefix, first)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Either gate may win the lock next (the first reconnects too); what matters is that the
	// courier stopped, at least for a moment, and that one runs again.
	for deadline := time.Now().Add(10 * time.Second); len(g.running()) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the courier of %s still runs %s after its session ended", first, time.Since(start))
		}
	}
	stopped := time.Since(start)
	next := g.waitHolder(t, "", 10*time.Second)
	t.Logf("session of %s ended: its courier stopped after %s; %s dispatches %s after", first, stopped.Round(time.Millisecond), next, time.Since(start).Round(time.Millisecond))
	close(stop)
	if m := <-most; m != 1 {
		t.Errorf("%d couriers ran at once, want 1", m)
	}
	for i, l := range g.logs {
		if bytes.Contains([]byte(l.String()), []byte("password")) {
			t.Errorf("gate %d log mentions a password:\n%s", i, l.String())
		}
	}
}

// Postgres restarts: every gate loses its session; afterwards exactly one courier runs again.
func TestPostgresRestart(t *testing.T) {
	dsn := newDatabase(t, "gaterestart")
	g := startGates(t, dsn, 3)
	stop := make(chan struct{})
	most := g.watch(stop)
	first := g.waitHolder(t, "", 10*time.Second)
	pg.Stop()
	for deadline := time.Now().Add(10 * time.Second); len(g.running()) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the courier of %s still runs without its database", first)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	next := g.waitHolder(t, "", 20*time.Second)
	t.Logf("Postgres restarted: %s held the courier before, %s after", first, next)
	close(stop)
	if m := <-most; m != 1 {
		t.Errorf("%d couriers ran at once, want 1", m)
	}
}

// A courier that exits gives the lock up; a gate takes it again.
func TestCourierExitReleasesLock(t *testing.T) {
	dsn := newDatabase(t, "gateexit")
	dir := t.TempDir()
	count := filepath.Join(dir, "starts")
	gate := &courier.Gate{DSN: dsn, Command: []string{"/bin/sh", "-c", fmt.Sprintf("echo x >> %q; exit 3", count)},
		Pod: "exits", Retry: 100 * time.Millisecond, Grace: time.Second, Log: &syncBuffer{}, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := gate.Run(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(count)
	if n := bytes.Count(b, []byte("x")); n < 2 {
		t.Errorf("the courier started %d times in 2s, want it restarted after it exited", n)
	}
	if h, err := courier.Holder(context.Background(), dsn); err != nil || h != "" {
		t.Errorf("Holder after the gate stopped = %q, %v; want none", h, err)
	}
}

// Three migrations started together on one database run one after the other: the marker of a
// running one is never there twice, and each ran.
func TestExclusiveSerialises(t *testing.T) {
	dsn := newDatabase(t, "gatemigrate")
	dir := t.TempDir()
	running, done := filepath.Join(dir, "running"), filepath.Join(dir, "done")
	// Fails if another is running (the marker exists), else holds the marker for 300 ms.
	script := fmt.Sprintf(`set -e; if [ -e %[1]q ]; then echo overlap; exit 7; fi; touch %[1]q; sleep 0.3; rm %[1]q; echo x >> %[2]q`, running, done)
	errs := make(chan error, 3)
	log := &syncBuffer{}
	for i := range 3 {
		go func() {
			errs <- courier.Exclusive(context.Background(), dsn, fmt.Sprintf("pod-%d", i), []string{"/bin/sh", "-c", script}, log, log, log)
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("migration: %v\n%s", err, log.String())
		}
	}
	b, _ := os.ReadFile(done)
	if n := bytes.Count(b, []byte("x")); n != 3 {
		t.Errorf("%d migrations ran, want 3\n%s", n, log.String())
	}
	if !bytes.Contains([]byte(log.String()), []byte("another pod is migrating this database; waiting")) {
		t.Errorf("no migration waited for another:\n%s", log.String())
	}
	// The command's failure is the caller's: its exit status comes back.
	err := courier.Exclusive(context.Background(), dsn, "fails", []string{"/bin/sh", "-c", "exit 4"}, log, log, log)
	if err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("a failing command: %v", err)
	}
}
