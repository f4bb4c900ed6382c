package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kratos "github.com/ory/kratos-client-go"
	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// injectedKratos deploys one injected Kratos on the real node with the given Secrets and
// annotations and returns the Ready pod with port-forwards to its admin and public APIs.
func injectedKratos(t *testing.T, ctx context.Context, s *stack, n *testbed.Node, ns string, secrets map[string]map[string]string, ann map[string]string) (*corev1.Pod, *kratos.APIClient, *kratos.APIClient) {
	t.Helper()
	createSecrets(t, ctx, s, ns, secrets)
	dep := deployment("id", 1, map[string]string{injectLabel: "true"}, ann, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app=id")
	fwd := func(port int) *kratos.APIClient {
		fw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, pod, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fw.Close)
		return kratosClient(fw.URL)
	}
	return pod, fwd(config.AdminPort), fwd(config.PublicPort)
}

// requestRecovery asks, through the public API, for a recovery code mailed to email.
func requestRecovery(ctx context.Context, public *kratos.APIClient, email string) error {
	rf, _, err := public.FrontendAPI.CreateNativeRecoveryFlow(ctx).Execute()
	if err != nil {
		return err
	}
	body := kratos.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(&kratos.UpdateRecoveryFlowWithCodeMethod{Method: "code", Email: &email})
	_, _, err = public.FrontendAPI.UpdateRecoveryFlow(ctx).Flow(rf.Id).UpdateRecoveryFlowBody(body).Execute()
	return err
}

// With its SMTP server down for a minute, an injected Kratos keeps the recovery mails asked
// for meanwhile queued (Kratos's default would abandon each after 5 failed sends, about five
// seconds) and delivers every one of them once the server is back: none lost.
func TestFaultSMTPDownMailsQueued(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	b := theBed(t)
	opts := mailpitOptions()
	opts.Name = "mailpit-fault"
	m, err := b.StartMailpit(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := namespace(t, s, "fault-smtp")
	_, admin, public := injectedKratos(t, ctx, s, n, ns,
		map[string]map[string]string{"smtp": {"host": m.SMTPHost, "port": fmt.Sprint(m.SMTPPort), "transport_security": "none"}},
		map[string]string{"kratos-injector.io/smtp-secret": "smtp"})

	const mails = 10
	var emails []string
	for i := range mails {
		email := fmt.Sprintf("queued-%d@bed.example", i)
		emails = append(emails, email)
		if _, _, err := admin.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(kratos.CreateIdentityBody{
			SchemaId: "default", Traits: map[string]any{"email": email}}).Execute(); err != nil {
			t.Fatal(err)
		}
	}

	m.Proc.Stop()
	down := time.Now()
	for _, email := range emails {
		if err := requestRecovery(ctx, public, email); err != nil {
			t.Fatalf("recovery for %s with SMTP down: %v (the request must succeed: the mail is queued)", email, err)
		}
	}
	time.Sleep(time.Minute - time.Since(down))
	msgs, _, err := admin.CourierAPI.ListCourierMessages(ctx).PageSize(100).Execute()
	if err != nil {
		t.Fatal(err)
	}
	maxSends := int64(0)
	for _, msg := range msgs {
		if msg.Status == kratos.COURIERMESSAGESTATUS_ABANDONED || msg.Status == kratos.COURIERMESSAGESTATUS_SENT {
			t.Errorf("message to %s is %s after a minute without SMTP, want still queued", msg.Recipient, msg.Status)
		}
		maxSends = max(maxSends, msg.SendCount)
	}
	t.Logf("after %s without SMTP: %d messages queued, up to %d failed sends each", time.Since(down).Round(time.Second), len(msgs), maxSends)
	if len(msgs) != mails || maxSends <= 5 {
		t.Errorf("%d messages, at most %d sends: want %d messages each retried more than Kratos's default 5 times", len(msgs), maxSends, mails)
	}

	// The server comes back on the same port; every queued mail arrives.
	opts.SMTPPort = m.SMTPPort
	back, err := b.StartMailpit(opts)
	if err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	for _, email := range emails {
		if _, err := back.WaitMessageTo(ctx, email); err != nil {
			t.Fatalf("mail to %s after SMTP came back: %v", email, err)
		}
	}
	t.Logf("all %d queued mails delivered %s after SMTP came back", mails, time.Since(up).Round(time.Millisecond))
	msgs, _, err = admin.CourierAPI.ListCourierMessages(ctx).PageSize(100).Execute()
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, msg := range msgs {
		if msg.Status == kratos.COURIERMESSAGESTATUS_SENT {
			sent++
		}
	}
	if sent != mails {
		t.Errorf("%d of %d messages sent according to Kratos", sent, mails)
	}
}

// Postgres restarted under traffic: requests to the injected Kratos during the outage fail
// cleanly (an error answer, never a hang past the client's timeout), Kratos recovers by itself
// (its container is not restarted), the pod is Ready again, and requests succeed after.
func TestFaultPostgresRestart(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	p := postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := namespace(t, s, "fault-pg")
	db, err := p.NewDatabase(ctx, "fault", "fault-pg-Pa55word")
	if err != nil {
		t.Fatal(err)
	}
	pod, admin, _ := injectedKratos(t, ctx, s, n, ns,
		map[string]map[string]string{"db": dbSecret(db, n.IP)},
		map[string]string{"kratos-injector.io/database-secret": "db", "kratos-injector.io/migrate": "auto"})

	// Traffic: an identity created every 100 ms until told to stop.
	var ok, failed, hung atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			_, resp, err := admin.IdentityAPI.CreateIdentity(rctx).CreateIdentityBody(kratos.CreateIdentityBody{
				SchemaId: "default", Traits: map[string]any{"email": fmt.Sprintf("traffic-%d@bed.example", i)}}).Execute()
			timedOut := rctx.Err() == context.DeadlineExceeded
			rcancel()
			switch {
			case err == nil:
				ok.Add(1)
			case timedOut:
				hung.Add(1)
			default:
				failed.Add(1)
				status := 0
				if resp != nil {
					status = resp.StatusCode
				}
				lastErr.Store(fmt.Sprintf("%d %v", status, err))
			}
		}
	}()
	time.Sleep(2 * time.Second)
	before := ok.Load()

	p.Stop()
	time.Sleep(10 * time.Second)
	duringOK, duringFailed := ok.Load()-before, failed.Load()
	if err := p.Start(); err != nil {
		close(stop)
		t.Fatal(err)
	}
	restarted := time.Now()

	// Kratos recovers: creations succeed again and the pod is Ready.
	var recovered time.Duration
	for deadline := time.Now().Add(2 * time.Minute); ; {
		mark := ok.Load()
		time.Sleep(time.Second)
		if ok.Load() > mark {
			recovered = time.Since(restarted)
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("no successful request 2m after Postgres came back (last error %v)\n%s", lastErr.Load(), testbed.PodReport(ctx, s.CP.Client, ns, pod.Name))
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	t.Logf("Postgres down 10s: %d requests succeeded before, %d during the outage, %d failed with an error answer (last: %v), %d hung; first success %s after it came back",
		before, duringOK, duringFailed, lastErr.Load(), hung.Load(), recovered.Round(time.Millisecond))
	if before == 0 {
		t.Error("no request succeeded before the outage")
	}
	if duringFailed == 0 {
		t.Error("no request failed while Postgres was down: the outage was not observed")
	}
	if hung.Load() != 0 {
		t.Errorf("%d requests hung past 10s instead of failing cleanly", hung.Load())
	}
	got, err := testbed.WaitPodReady(ctx, s.CP.Client, ns, pod.Name, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if st := instance.ContainerStatus(got, inject.ContainerKratos); st == nil || st.RestartCount != 0 {
		t.Errorf("Kratos container status %+v: want it recovered without a restart", st)
	}
}

// The API server restarted in the middle of `kubectl kratos migrate`: the command either
// completes (and the database is then migrated) or fails with one clear line; it never reports
// success for an unfinished migration. Run again, it migrates and the pod becomes Ready. Twice:
// a graceful restart (SIGTERM: the API server drains, so the exec stream may finish) and a crash
// (SIGKILL: the stream breaks at once, so the plugin must notice).
func TestFaultAPIServerRestartDuringMigrate(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"graceful", syscall.SIGTERM}, {"crash", syscall.SIGKILL}} {
		t.Run(tc.name, func(t *testing.T) { apiServerRestartDuringMigrate(t, tc.name, tc.sig) })
	}
}

func apiServerRestartDuringMigrate(t *testing.T, name string, sig syscall.Signal) {
	s, n := node(t)
	_, _ = webhook(t)
	p := postgres(t)
	bin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := namespace(t, s, "fault-migrate-"+name)
	db, err := p.NewDatabase(ctx, "migr"+name, "fault-migrate-"+name+"-Pa55word")
	if err != nil {
		t.Fatal(err)
	}
	createSecrets(t, ctx, s, ns, map[string]map[string]string{"db": dbSecret(db, n.IP)})
	dep := deployment("accounts", 1, map[string]string{injectLabel: "true"},
		map[string]string{"kratos-injector.io/database-secret": "db", "kratos-injector.io/migrate": "manual"}, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pods := waitPods(t, s.CP.Client, ns, "app=accounts", 2*time.Minute, func(p []corev1.Pod) error {
		for i := range p {
			if st := instance.ContainerStatus(&p[i], inject.ContainerKratos); st != nil && st.State.Running != nil {
				return nil
			}
		}
		return fmt.Errorf("Kratos not running yet")
	})
	kubeconfig := t.TempDir() + "/admin.kubeconfig"
	if err := s.CP.WriteKubeconfig(kubeconfig, "admin"); err != nil {
		t.Fatal(err)
	}
	migrated := func() bool {
		n, err := p.SQL(ctx, db.Name, "select count(*) from information_schema.tables where table_name = 'identities'")
		return err == nil && n == "1"
	}

	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", kubeconfig, "-n", ns, "migrate", "--timeout", "2m")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(stderr.String(), "Migrating the database"); {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("migrate did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	restart := time.Now()
	if err := s.CP.RestartAPIServer(sig); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server restarted with %v (%s) while migrate ran", sig, time.Since(restart).Round(time.Millisecond))
	err = cmd.Wait()
	out := stderr.String()
	if err == nil {
		if !migrated() {
			t.Errorf("migrate reported success but the database is not migrated:\n%s", out)
		}
		t.Logf("migrate completed across the restart")
	} else {
		last := strings.TrimSpace(out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:])
		if !strings.HasPrefix(last, "error: ") || strings.Contains(out, "Database of instance") || strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
			t.Errorf("migrate failed without one clear error line:\n%s", out)
		}
		if sig == syscall.SIGKILL && !strings.Contains(last, "run kubectl kratos migrate again") {
			t.Errorf("a broken stream should say the migration may be unfinished and to run migrate again: %s", last)
		}
		t.Logf("migrate failed cleanly (%v): %s", err, last)
	}

	// Run again: it migrates (applied migrations are skipped) and the pod becomes Ready.
	again := exec.CommandContext(ctx, bin, "--kubeconfig", kubeconfig, "-n", ns, "migrate", "--timeout", "2m")
	if b, err := again.CombinedOutput(); err != nil {
		t.Fatalf("migrate again after the restart: %v\n%s", err, b)
	}
	if !migrated() {
		t.Error("the database is not migrated after a successful migrate")
	}
	if _, err := testbed.WaitPodReady(ctx, s.CP.Client, ns, pods[0].Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
