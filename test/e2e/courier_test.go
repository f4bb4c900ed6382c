package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kratos "github.com/ory/kratos-client-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// Three replicas of an injected Kratos on one Postgres send every mail exactly once: recovery
// mails are asked for in bursts of 100 through the public APIs of all three pods, Mailpit counts
// what it receives, Kratos's courier table says how often each message was sent, and a sampler
// on the real node counts the processes dispatching mail (at most one at any moment). Then the
// pod that holds the courier is deleted in the middle of a burst: every mail still arrives, and
// another pod takes the courier over.
func TestCourierOnePerDatabase(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	p := postgres(t)
	b := theBed(t)
	mopts := mailpitOptions()
	mopts.Name = "mailpit-courier"
	m, err := b.StartMailpit(mopts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	ns := namespace(t, s, "courier")
	db, err := p.NewDatabase(ctx, "courier", "courier-Pa55word-db")
	if err != nil {
		t.Fatal(err)
	}
	createSecrets(t, ctx, s, ns, map[string]map[string]string{
		"db":   dbSecret(db, n.IP),
		"smtp": {"host": m.SMTPHost, "port": fmt.Sprint(m.SMTPPort), "transport_security": "none"},
	})
	dep := deployment("mail", 3, map[string]string{injectLabel: "true"}, map[string]string{
		"kratos-injector.io/database-secret": "db", "kratos-injector.io/migrate": "auto",
		"kratos-injector.io/smtp-secret": "smtp"}, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pods := waitPods(t, s.CP.Client, ns, "app=mail", 4*time.Minute, podsReady(3))
	for i := range pods {
		for st := range instance.ContainerStatuses(&pods[i]) {
			// Three replicas migrating one fresh database at once: the migration lock makes
			// them take turns, so none fails and restarts.
			if st.RestartCount > 0 {
				t.Errorf("pod %s: container %s restarted %d times (last: %s)", pods[i].Name, st.Name, st.RestartCount, lastTermination(st))
			}
		}
	}

	// The sampler: every 100 ms, the courier processes of this Deployment's pods on the node.
	smp := startCourierSampler(t, ctx, s, ns, "app=mail")

	fw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, &pods[0], config.AdminPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.Close)
	admin := kratosClient(fw.URL)
	publics := forwardPublic(t, ctx, s, pods)

	const bursts, perBurst = 3, 100
	requested := 0
	for burst := range bursts {
		emails := createIdentities(t, ctx, admin, fmt.Sprintf("burst%d", burst), perBurst)
		start := time.Now()
		if failed := recoveryBurst(ctx, publics, emails, nil); failed != 0 {
			t.Fatalf("burst %d: %d recovery requests failed", burst, failed)
		}
		requested += perBurst
		waitCourierDrained(t, ctx, p, db.Name, requested, 2*time.Minute)
		t.Logf("burst %d: %d recovery mails requested through %d pods and sent in %s", burst, perBurst, len(publics), time.Since(start).Round(time.Millisecond))
	}
	delivered, dup := mailCounts(t, ctx, m)
	sends := sendCounts(t, ctx, p, db.Name)
	t.Logf("after %d bursts of %d: Mailpit received %d mails for %d recipients (%d duplicates); send_count per message: %v; at most %d courier processes at once (%d samples)",
		bursts, perBurst, delivered, delivered-dup, dup, sends, smp.max(), smp.samples.Load())
	if delivered != requested || dup != 0 {
		t.Errorf("%d mails delivered with %d duplicates, want %d and 0", delivered, dup, requested)
	}
	if len(sends) != 1 || sends[1] != requested {
		t.Errorf("send_count per message %v, want every one of the %d sent once", sends, requested)
	}
	if smp.max() != 1 {
		t.Errorf("at most %d pods dispatched mail at once, want exactly 1", smp.max())
	}

	// Delete the pod holding the courier half-way through a burst.
	holder := smp.holder()
	if holder == "" {
		t.Fatal("no pod holds the courier")
	}
	status := kubectlKratos(t, s, ns, "status")
	if !strings.Contains(status, "COURIER") || !strings.Contains(status, holder) {
		t.Errorf("kubectl kratos status does not show that %s holds the courier:\n%s", holder, status)
	}
	var survivors []publicAPI
	for _, pub := range publics {
		if pub.pod != holder {
			survivors = append(survivors, pub)
		}
	}
	emails := createIdentities(t, ctx, admin, "kill", perBurst)
	var killedAt atomic.Value
	failed := recoveryBurst(ctx, survivors, emails, func(i int) {
		if i == perBurst/2 {
			killedAt.Store(time.Now())
			if err := s.CP.Client.CoreV1().Pods(ns).Delete(ctx, holder, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete %s: %v", holder, err)
			}
		}
	})
	if failed != 0 {
		t.Fatalf("kill burst: %d recovery requests failed", failed)
	}
	requested += perBurst
	next, took := smp.waitNewHolder(t, holder, killedAt.Load().(time.Time), time.Minute)
	t.Logf("deleted courier pod %s mid-burst: %s holds the courier %s later", holder, next, took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("the next courier started %s after the holder was deleted, want within 30s", took)
	}
	waitCourierDrained(t, ctx, p, db.Name, requested, 3*time.Minute)
	delivered, dup = mailCounts(t, ctx, m)
	sends = sendCounts(t, ctx, p, db.Name)
	t.Logf("after the kill burst: %d of %d mails delivered, %d duplicates; send_count per message: %v; at most %d courier processes at once",
		delivered-dup, requested, dup, sends, smp.max())
	if delivered-dup != requested {
		t.Errorf("%d distinct mails delivered, want all %d", delivered-dup, requested)
	}
	if smp.max() != 1 {
		t.Errorf("at most %d pods dispatched mail at once, want exactly 1", smp.max())
	}
}

type publicAPI struct {
	pod string
	url string
}

func forwardPublic(t *testing.T, ctx context.Context, s *stack, pods []corev1.Pod) []publicAPI {
	t.Helper()
	var out []publicAPI
	for i := range pods {
		fw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, &pods[i], config.PublicPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fw.Close)
		out = append(out, publicAPI{pod: pods[i].Name, url: fw.URL})
	}
	return out
}

// recoveryBurst asks for one recovery mail per address, 50 at a time, spread over the public
// APIs in turn; before(i) runs before the i-th request is sent. It returns how many failed.
func recoveryBurst(ctx context.Context, publics []publicAPI, emails []string, before func(int)) int {
	var failed atomic.Int64
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for i, email := range emails {
		if before != nil {
			before(i)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := requestRecovery(rctx, kratosClient(publics[i%len(publics)].url), email); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}

// waitCourierDrained waits until Kratos's courier table has want messages and none is still
// queued or processing.
func waitCourierDrained(t *testing.T, ctx context.Context, p *testbed.Postgres, dbName string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// status: 1 queued, 2 sent, 3 processing, 4 abandoned (courier.MessageStatus).
		got, err := p.SQL(ctx, dbName, "select count(*) || ' ' || count(*) filter (where status in (1, 3)) from courier_messages")
		if err == nil {
			var total, pending int
			if _, err = fmt.Sscan(got, &total, &pending); err == nil && total >= want && pending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("courier not drained after %s: %s %v", timeout, got, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sendCounts maps send_count to how many messages have it.
func sendCounts(t *testing.T, ctx context.Context, p *testbed.Postgres, dbName string) map[int]int {
	t.Helper()
	got, err := p.SQL(ctx, dbName, "select coalesce(string_agg(send_count || ':' || n, ' '), '') from (select send_count, count(*) n from courier_messages group by 1) c")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, f := range strings.Fields(got) {
		var k, v int
		if _, err := fmt.Sscanf(f, "%d:%d", &k, &v); err != nil {
			t.Fatalf("send counts %q: %v", got, err)
		}
		out[k] = v
	}
	return out
}

// mailCounts is how many mails Mailpit received and how many of them repeat a recipient (each
// test address is asked for exactly one mail).
func mailCounts(t *testing.T, ctx context.Context, m *testbed.Mailpit) (delivered, duplicates int) {
	t.Helper()
	msgs, err := m.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, msg := range msgs {
		for _, to := range msg.To {
			if seen[to.Address] {
				duplicates++
			}
			seen[to.Address] = true
		}
	}
	return len(msgs), duplicates
}

// courierSampler watches, on the real node, which pods of a selector run a mail dispatcher:
// `kratos courier watch`, or `kratos serve --watch-courier`.
type courierSampler struct {
	mu      sync.Mutex
	most    int
	current []string // pod names dispatching at the last sample
	samples atomic.Int64
}

func startCourierSampler(t *testing.T, ctx context.Context, s *stack, ns, selector string) *courierSampler {
	smp := &courierSampler{}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		uids := map[string]string{} // pod UID -> name
		var listed time.Time
		for sctx.Err() == nil {
			if time.Since(listed) > time.Second {
				if l, err := s.CP.Client.CoreV1().Pods(ns).List(sctx, metav1.ListOptions{LabelSelector: selector}); err == nil {
					uids = map[string]string{}
					for _, p := range l.Items {
						uids[string(p.UID)] = p.Name
					}
					listed = time.Now()
				}
			}
			pods := dispatchingPods(uids)
			smp.mu.Lock()
			smp.most = max(smp.most, len(pods))
			smp.current = pods
			smp.mu.Unlock()
			smp.samples.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return smp
}

func (c *courierSampler) max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.most
}

func (c *courierSampler) holder() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.current) != 1 {
		return ""
	}
	return c.current[0]
}

// waitNewHolder waits until a pod other than old dispatches, and says how long after since.
func (c *courierSampler) waitNewHolder(t *testing.T, old string, since time.Time, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if h := c.holder(); h != "" && h != old {
			return h, time.Since(since)
		}
	}
	t.Fatalf("no pod took the courier over within %s of deleting %s", timeout, old)
	return "", 0
}

// dispatchingPods lists the pods (by the names in uids) with a process that dispatches mail.
func dispatchingPods(uids map[string]string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if filepath.Base(args[0]) != "kratos" {
			continue
		}
		line := strings.Join(args, " ")
		if !strings.Contains(line, " courier watch") && !strings.Contains(line, "--watch-courier") {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(d, "cgroup"))
		if err != nil {
			continue
		}
		for uid, name := range uids {
			if strings.Contains(string(cg), uid) || strings.Contains(string(cg), strings.ReplaceAll(uid, "-", "_")) {
				out = append(out, name)
			}
		}
	}
	return out
}

// podsReady waits for n pods that are Ready.
func podsReady(n int) func([]corev1.Pod) error {
	return func(pods []corev1.Pod) error {
		ready := 0
		for i := range pods {
			if pods[i].DeletionTimestamp == nil && instance.IsReady(&pods[i]) {
				ready++
			}
		}
		if ready < n {
			return fmt.Errorf("%d/%d Ready", ready, n)
		}
		return nil
	}
}

// createIdentities creates n identities prefix-i@bed.example through the admin API.
func createIdentities(t *testing.T, ctx context.Context, admin *kratos.APIClient, prefix string, n int) []string {
	t.Helper()
	var emails []string
	for i := range n {
		email := fmt.Sprintf("%s-%d@bed.example", prefix, i)
		if _, _, err := admin.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(kratos.CreateIdentityBody{
			SchemaId: "default", Traits: map[string]any{"email": email}}).Execute(); err != nil {
			t.Fatalf("create %s: %v", email, err)
		}
		emails = append(emails, email)
	}
	return emails
}

// kubectlKratos runs the built plugin as the bed's admin in namespace ns and returns its
// output; it fails the test if the plugin fails.
func kubectlKratos(t *testing.T, s *stack, ns string, args ...string) string {
	t.Helper()
	bin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := s.CP.WriteKubeconfig(kubeconfig, "admin"); err != nil {
		t.Fatal(err)
	}
	c := &pluginCLI{bin: bin, args: []string{"--kubeconfig", kubeconfig, "-n", ns}}
	r := c.run(t, "", args...).ok(t)
	return r.stdout + r.stderr
}

func lastTermination(st *corev1.ContainerStatus) string {
	if t := st.LastTerminationState.Terminated; t != nil {
		return fmt.Sprintf("exit %d %s: %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
	}
	return "-"
}
