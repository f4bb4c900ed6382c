package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The leak scan: every secret value the suite used must appear in no log the bed collected (API
// server audit log, webhook, kubelet, containerd, kube-controller-manager, Kratos processes,
// every container's log), in no Event, in no pod's spec, status or annotations, and in nothing
// the plugin printed. It knows the values it looks for: a ledger records, from a watch on every
// Secret of the cluster, the value of each key that holds a credential, and the passwords the
// tests pipe into the plugin. TestMain runs the scan after the suite and fails the run on a hit,
// naming the file, line and Secret key, never the value.

// minSecretLen is the shortest value the scan looks for: shorter ones ("5432", "none") are
// not secrets and would match everywhere.
const minSecretLen = 8

// credentialKeys are the Secret keys whose whole value is a credential (Secret formats:
// docs/annotations.md); keys named *.key hold private keys. dsn and uri hold a URL whose
// password is the credential.
var credentialKeys = map[string]bool{
	"password": true, "client_secret": true, "apple_private_key": true,
	"default": true, "cookie": true, "cipher": true, "token": true,
}

// ledger is the set of secret values the suite used, each with a label that names where it
// came from (namespace/Secret key), which is what a finding reports.
type ledger struct {
	mu      sync.Mutex
	values  map[string]string
	secrets int
}

func newLedger() *ledger { return &ledger{values: map[string]string{}} }

func (l *ledger) add(label, v string) {
	v = strings.TrimSpace(v)
	if len(v) < minSecretLen {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.values[v]; !ok {
		l.values[v] = label
	}
}

// addSecret records the credentials a Secret holds.
func (l *ledger) addSecret(s *corev1.Secret) {
	if s.Type == corev1.SecretTypeServiceAccountToken {
		return // the bed's own API credentials, not the suite's secrets
	}
	l.mu.Lock()
	l.secrets++
	l.mu.Unlock()
	for k, b := range s.Data {
		label := fmt.Sprintf("Secret %s/%s key %s", s.Namespace, s.Name, k)
		v := string(b)
		switch {
		case k == "dsn" || k == "uri":
			if u, err := url.Parse(strings.TrimSpace(v)); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok {
					l.add(label+" (password)", pw)
				}
			}
		case credentialKeys[k]:
			for part := range strings.SplitSeq(v, ",") {
				l.addPEMOr(label, part)
			}
		case strings.HasSuffix(k, ".key"):
			l.addPEMOr(label, v)
		}
	}
}

// addPEMOr records a PEM block's base64 lines (a leak may print part of a key), or v whole.
func (l *ledger) addPEMOr(label, v string) {
	if !strings.Contains(v, "-----BEGIN") {
		l.add(label, v)
		return
	}
	for line := range strings.SplitSeq(v, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 32 && !strings.HasPrefix(line, "-----") {
			l.add(label+" (PEM line)", line)
		}
	}
}

// needles are the forms a value takes when written down: as is, URL-escaped, JSON-escaped, base64.
func (l *ledger) needles() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, 4*len(l.values))
	for v, label := range l.values {
		j, _ := json.Marshal(v)
		for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v), string(j[1 : len(j)-1]),
			base64.StdEncoding.EncodeToString([]byte(v))} {
			out[form] = label
		}
	}
	return out
}

// finding is a secret value found where it must not be.
type finding struct {
	file  string
	line  int
	label string
}

// scan looks for every needle in every regular file under the roots; it returns the findings,
// and how many files and bytes it read.
func scan(needles map[string]string, roots ...string) (found []finding, files int, bytes int64, err error) {
	for _, root := range roots {
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			files++
			r := bufio.NewReaderSize(f, 1<<20)
			for n := 1; ; n++ {
				line, rerr := r.ReadString('\n')
				bytes += int64(len(line))
				for needle, label := range needles {
					if strings.Contains(line, needle) {
						found = append(found, finding{p, n, label})
					}
				}
				if rerr == io.EOF {
					return nil
				}
				if rerr != nil {
					return rerr
				}
			}
		})
		if err != nil {
			return found, files, bytes, err
		}
	}
	return found, files, bytes, nil
}

// leakWatch records, for the scan, every Secret's credentials in the ledger and every pod and
// Event (as JSON lines) in a file: namespaces that tests delete take their objects with them.
type leakWatch struct {
	ledger  *ledger
	objects *os.File
	mu      sync.Mutex
	stop    chan struct{}
}

var (
	leaks     *leakWatch
	leaksOnce sync.Once
)

// startLeakWatch starts the watch on the cluster's Secrets, pods and Events.
func startLeakWatch(cs kubernetes.Interface, dir string) (*leakWatch, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "objects.jsonl"))
	if err != nil {
		return nil, err
	}
	w := &leakWatch{ledger: newLedger(), objects: f, stop: make(chan struct{})}
	factory := informers.NewSharedInformerFactory(cs, 0)
	record := func(obj any) {
		switch o := obj.(type) {
		case *corev1.Secret:
			w.ledger.addSecret(o)
		case *corev1.Pod, *eventsv1.Event:
			b, err := json.Marshal(o)
			if err == nil {
				w.mu.Lock()
				_, _ = w.objects.Write(append(b, '\n'))
				w.mu.Unlock()
			}
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }}
	for _, inf := range []cache.SharedIndexInformer{
		factory.Core().V1().Secrets().Informer(),
		factory.Core().V1().Pods().Informer(),
		factory.Events().V1().Events().Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	factory.Start(w.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("leak watch: %v did not sync", typ)
		}
	}
	return w, nil
}

// leakWatchOf starts the shared watch with the cluster (once).
func leakWatchOf(s *stack) {
	leaksOnce.Do(func() {
		w, err := startLeakWatch(s.CP.Client, s.Bed.Path("leakscan"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "leak scan: cannot watch the cluster: %v\n", err)
			return
		}
		leaks = w
	})
}

// rememberSecret adds a value the suite uses as a credential outside any Secret (a password
// piped into the plugin).
func rememberSecret(label, v string) {
	if leaks != nil {
		leaks.ledger.add(label, v)
	}
}

// pluginOutput keeps everything the plugin printed, for the scan.
func pluginOutput(args []string, stdout, stderr string) {
	if leaks == nil {
		return
	}
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(filepath.Dir(leaks.objects.Name()), "plugin-output.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "$ kubectl-kratos %s\n%s\n%s\n", strings.Join(args, " "), stdout, stderr)
}

// podLogArchive copies the real node's container logs every second, so the logs of pods that
// tests delete are scanned too (a pod deleted within a second of its last line may lose it).
type podLogArchive struct {
	src, dst string
	sizes    map[string]int64
	stop     chan struct{}
	done     chan struct{}
}

func archivePodLogs(src, dst string) *podLogArchive {
	a := &podLogArchive{src: src, dst: dst, sizes: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			a.sweep()
			select {
			case <-a.stop:
				a.sweep()
				return
			case <-t.C:
			}
		}
	}()
	return a
}

func (a *podLogArchive) sweep() {
	_ = filepath.WalkDir(a.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() == a.sizes[p] {
			return nil
		}
		rel, _ := filepath.Rel(a.src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		out := filepath.Join(a.dst, rel)
		if os.MkdirAll(filepath.Dir(out), 0o755) == nil && os.WriteFile(out, b, 0o644) == nil {
			a.sizes[p] = info.Size()
		}
		return nil
	})
}

func (a *podLogArchive) close() {
	close(a.stop)
	<-a.done
}

var podLogs *podLogArchive

// leakScan runs after the suite: it fails (returns false) on any secret value found, or when
// the suite used a cluster but the ledger knows no secret (a scan that knows nothing proves
// nothing).
func leakScan(roots []string) bool {
	if leaks == nil {
		return true // no test started the cluster
	}
	if podLogs != nil {
		podLogs.close()
	}
	close(leaks.stop)
	leaks.mu.Lock()
	_ = leaks.objects.Sync()
	leaks.mu.Unlock()

	needles := leaks.ledger.needles()
	if len(needles) == 0 {
		fmt.Fprintln(os.Stderr, "leak scan: FAIL: the suite ran but the ledger holds no secret value to look for")
		return false
	}
	// What the bed collected: component logs (API server, controllers, kubelet, containerd,
	// kwok, webhook, Kratos processes, Mailpit), the audit log, the archived container logs,
	// the pods and Events seen, and the plugin's output. Not scanned: etcd's and Postgres's
	// data, and the config files the bed writes for its own Kratos processes, which hold
	// secrets by design.
	found, files, size, err := scan(needles, roots...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "leak scan: FAIL: %v\n", err)
		return false
	}
	leaks.ledger.mu.Lock()
	nValues, nSecrets := len(leaks.ledger.values), leaks.ledger.secrets
	leaks.ledger.mu.Unlock()
	fmt.Fprintf(os.Stderr, "leak scan: %d secret values (from %d Secrets and the plugin's stdin) in %d forms, %d files, %.1f MiB: %d hits\n",
		nValues, nSecrets, len(needles), files, float64(size)/(1<<20), len(found))
	if len(found) == 0 {
		return true
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].file != found[j].file {
			return found[i].file < found[j].file
		}
		return found[i].line < found[j].line
	})
	for i, f := range found {
		if i == 50 {
			fmt.Fprintf(os.Stderr, "  ... and %d more\n", len(found)-50)
			break
		}
		fmt.Fprintf(os.Stderr, "  LEAK %s:%d: the value of %s\n", f.file, f.line, f.label)
	}
	return false
}

// The scan itself finds what it must, in every form, and names the Secret key, not the value.
func TestLeakScanFindsPlantedSecrets(t *testing.T) {
	l := newLedger()
	l.addSecret(&corev1.Secret{Data: map[string][]byte{
		"dsn":      []byte("postgres://kratos:pg-Pa55%2Fword@db:5432/kratos"),
		"host":     []byte("db.example.internal"),
		"password": []byte("smtp-Pa55word"),
		"default":  []byte("0123456789abcdef0123,fedcba9876543210fedc"),
		"port":     []byte("5432"),
	}})
	l.add("stdin", "admin-Pa55word!")
	dir := t.TempDir()
	files := map[string]string{
		"a/kratos.log":   "level=info msg=\"connecting\" dsn=postgres://kratos:pg-Pa55/word@db\n",
		"b/audit.log":    `{"requestObject":{"annotations":{"x":"smtp-Pa55word"}}}` + "\n",
		"c/plugin.log":   "ok\npassword=admin-Pa55word%21\n",
		"d/events.jsonl": "fedcba9876543210fedc\n",
		"e/clean.log":    "host db.example.internal port 5432\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	found, n, _, err := scan(l.needles(), dir, filepath.Join(dir, "missing"))
	if err != nil || n != len(files) {
		t.Fatalf("scan: %v, %d files", err, n)
	}
	got := map[string]string{}
	for _, f := range found {
		rel, _ := filepath.Rel(dir, f.file)
		got[rel] = f.label
	}
	want := map[string]string{
		"a/kratos.log":   "Secret / key dsn (password)",
		"b/audit.log":    "Secret / key password",
		"c/plugin.log":   "stdin",
		"d/events.jsonl": "Secret / key default",
	}
	for p, label := range want {
		if got[p] != label {
			t.Errorf("%s: found %q, want %q", p, got[p], label)
		}
	}
	if _, ok := got["e/clean.log"]; ok {
		t.Errorf("host and port are not credentials, but the scan flagged them")
	}
}
