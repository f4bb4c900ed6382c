package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

var createOpts = metav1.CreateOptions{}

func nsObj(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// waitPods polls until the pods matching selector in ns satisfy ok, and reports what it saw last.
func waitPods(t testing.TB, c kubernetes.Interface, ns, selector string, timeout time.Duration, ok func([]corev1.Pod) error) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			if last = ok(list.Items); last == nil {
				return list.Items
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			// The namespace's warnings say why pods are missing (a denied admission, a quota).
			var why []string
			if evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, e := range evs.Items {
					if e.Type == corev1.EventTypeWarning {
						why = append(why, fmt.Sprintf("%s %s: %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message))
					}
				}
			}
			t.Fatalf("pods %q in %s: %v (after %s); warnings: %v", selector, ns, last, timeout, why)
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podsRunning(n int) func([]corev1.Pod) error {
	return func(pods []corev1.Pod) error {
		running := 0
		var states []string
		for _, p := range pods {
			states = append(states, fmt.Sprintf("%s=%s", p.Name, p.Status.Phase))
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running < n {
			return fmt.Errorf("%d/%d Running [%s]", running, n, strings.Join(states, " "))
		}
		return nil
	}
}

func selector(m map[string]string) string { return labels.SelectorFromSet(m).String() }

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// podProcess is the PID of the process named comm in the pod with that UID on the real node
// (found through its cgroup), 0 if there is none.
func podProcess(uid, comm string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		c, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(d, "cgroup"))
		if err != nil || !strings.Contains(string(cg), uid) && !strings.Contains(string(cg), strings.ReplaceAll(uid, "-", "_")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		return pid
	}
	return 0
}

// procCPU is the CPU time a process has used (user + system).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After the command name in parentheses: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procRSS reads VmRSS of a process, in bytes.
func procRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// dbSecret is a database Secret's data (the separate keys) for db, reached at host.
func dbSecret(db testbed.Database, host string) map[string]string {
	return map[string]string{"host": host, "port": strconv.Itoa(db.Port), "username": db.User, "password": db.Password,
		"dbname": db.Name, "sslmode": "disable"}
}

// createSecrets creates each named Secret in ns with its data.
func createSecrets(t testing.TB, ctx context.Context, s *stack, ns string, secrets map[string]map[string]string) {
	t.Helper()
	for name, data := range secrets {
		if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}, createOpts); err != nil {
			t.Fatalf("secret %s: %v", name, err)
		}
	}
}
