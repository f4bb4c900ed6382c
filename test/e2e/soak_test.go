//go:build soak

package e2e

// The soak (`make soak`, SOAK_DURATION, default 10m) is the fault tests run together and long:
// an injected Kratos on Postgres with SMTP to Mailpit serves steady traffic while Postgres and
// Mailpit are taken away again and again, and labelled pods are admitted and removed throughout.
// It is behind the soak build tag so that `make e2e` neither runs nor skips it.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kratos "github.com/ory/kratos-client-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

func TestSoak(t *testing.T) {
	duration := 10 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	s, n := node(t)
	_, inj := webhook(t)
	p := postgres(t)
	b := theBed(t)
	mopts := mailpitOptions()
	mopts.Name = "mailpit-soak"
	m, err := b.StartMailpit(mopts)
	if err != nil {
		t.Fatal(err)
	}
	mopts.SMTPPort = m.SMTPPort
	ctx, cancel := context.WithTimeout(context.Background(), duration+15*time.Minute)
	defer cancel()
	ns := namespace(t, s, "soak")
	db, err := p.NewDatabase(ctx, "soak", "soak-Pa55word-db")
	if err != nil {
		t.Fatal(err)
	}
	pod, admin, public := injectedKratos(t, ctx, s, n, ns, map[string]map[string]string{
		"db":   dbSecret(db, n.IP),
		"smtp": {"host": m.SMTPHost, "port": fmt.Sprint(m.SMTPPort), "transport_security": "none"},
	}, map[string]string{"kratos-injector.io/database-secret": "db", "kratos-injector.io/migrate": "auto",
		"kratos-injector.io/smtp-secret": "smtp"})
	t.Logf("soak for %s: Kratos pod %s on Postgres, SMTP to Mailpit", duration, pod.Name)

	var (
		mu                            sync.Mutex
		emails                        []string // identities Kratos said it created
		created, createFailed         atomic.Int64
		recoveries, recoveryFailed    atomic.Int64
		admitted, admitFailed, uninj  atomic.Int64
		pgOutages, smtpOutages        atomic.Int64
		lastCreateErr, lastRecoverErr atomic.Value
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	every := func(d time.Duration, f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(d):
				}
				f(i)
			}
		}()
	}
	// An identity every 100 ms.
	every(100*time.Millisecond, func(i int) {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		email := fmt.Sprintf("soak-%d@bed.example", i)
		if _, _, err := admin.IdentityAPI.CreateIdentity(rctx).CreateIdentityBody(kratos.CreateIdentityBody{
			SchemaId: "default", Traits: map[string]any{"email": email}}).Execute(); err != nil {
			createFailed.Add(1)
			lastCreateErr.Store(err.Error())
			return
		}
		created.Add(1)
		mu.Lock()
		emails = append(emails, email)
		mu.Unlock()
	})
	// A recovery mail every 500 ms, for an identity that exists.
	every(500*time.Millisecond, func(int) {
		mu.Lock()
		if len(emails) == 0 {
			mu.Unlock()
			return
		}
		email := emails[rand.IntN(len(emails))]
		mu.Unlock()
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		if err := requestRecovery(rctx, public, email); err != nil {
			recoveryFailed.Add(1)
			lastRecoverErr.Store(err.Error())
			return
		}
		recoveries.Add(1)
	})
	// A labelled pod admitted (on a kwok node) and deleted every 2 s: the webhook serves
	// throughout, and every one is injected exactly once. (Its admission warnings, about the
	// Secrets these pods do without, are not printed.)
	quietCfg := rest.CopyConfig(s.CP.Config)
	quietCfg.WarningHandler = rest.NoWarnings{}
	quiet, err := kubernetes.NewForConfig(quietCfg)
	if err != nil {
		t.Fatal(err)
	}
	every(2*time.Second, func(i int) {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		got, err := quiet.CoreV1().Pods(ns).Create(rctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%d", i), Labels: map[string]string{injectLabel: "true"}},
			Spec: corev1.PodSpec{NodeName: s.KwokNode, Tolerations: []corev1.Toleration{testbed.KwokToleration},
				Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
		}, createOpts)
		if err != nil {
			admitFailed.Add(1)
			return
		}
		admitted.Add(1)
		if got.Annotations[inject.AnnotationStatus] == "" || instance.Container(got, inject.ContainerKratos) == nil {
			uninj.Add(1)
		}
		_ = quiet.CoreV1().Pods(ns).Delete(rctx, got.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})

	// Memory of the two long-lived processes: sampled after a minute of warm-up and at the end.
	kratosRSS := func() int64 { return podProcessRSS(t, string(pod.UID), "kratos") }
	webhookRSS := func() int64 { return procRSS(inj.Proc.Cmd.Process.Pid) }

	// Faults, in 3-minute cycles: Postgres away for 10 s at 1:00, Mailpit away for 30 s at 2:00.
	start := time.Now()
	var warmKratos, warmWebhook int64
	for cycle := 0; time.Since(start) < duration; cycle++ {
		at := func(offset time.Duration) bool {
			wait := time.Until(start.Add(time.Duration(cycle)*3*time.Minute + offset))
			if time.Since(start)+max(wait, 0) >= duration {
				return false
			}
			time.Sleep(wait)
			return true
		}
		if !at(time.Minute) {
			break
		}
		if cycle == 0 {
			warmKratos, warmWebhook = kratosRSS(), webhookRSS()
		}
		p.Stop()
		time.Sleep(10 * time.Second)
		if err := p.Start(); err != nil {
			t.Fatalf("postgres back: %v", err)
		}
		pgOutages.Add(1)
		if !at(2 * time.Minute) {
			break
		}
		m.Proc.Stop()
		time.Sleep(30 * time.Second)
		if m, err = b.StartMailpit(mopts); err != nil {
			t.Fatalf("mailpit back: %v", err)
		}
		smtpOutages.Add(1)
		t.Logf("%s: %d identities (%d failed), %d recoveries (%d failed), %d pods admitted (%d failed)",
			time.Since(start).Round(time.Second), created.Load(), createFailed.Load(), recoveries.Load(),
			recoveryFailed.Load(), admitted.Load(), admitFailed.Load())
	}
	if d := duration - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	close(stop)
	wg.Wait()
	endKratos, endWebhook := kratosRSS(), webhookRSS()

	// Every mail that Kratos accepted is delivered, once: wait for the courier to drain its
	// queue, then compare its table with what Mailpit (which keeps its database across its
	// restarts) received.
	var sent, abandoned, queued int
	for deadline := time.Now().Add(3 * time.Minute); ; {
		sent, abandoned, queued = courierStatus(t, ctx, admin)
		if queued == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	delivered, err := m.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := countIdentities(t, ctx, admin)

	t.Logf("soak %s: %d Postgres outages, %d SMTP outages", time.Since(start).Round(time.Second), pgOutages.Load(), smtpOutages.Load())
	t.Logf("identities: %d created, %d failed cleanly (last: %v), %d listed", created.Load(), createFailed.Load(), lastCreateErr.Load(), listed)
	t.Logf("recovery mails: %d requested, %d refused (last: %v); courier: %d sent, %d abandoned, %d still queued; Mailpit received %d",
		recoveries.Load(), recoveryFailed.Load(), lastRecoverErr.Load(), sent, abandoned, queued, delivered)
	t.Logf("pods: %d admitted, %d refused, %d not injected", admitted.Load(), admitFailed.Load(), uninj.Load())
	t.Logf("RSS after warm-up -> at the end: Kratos %s -> %s, webhook %s -> %s", mib(warmKratos), mib(endKratos), mib(warmWebhook), mib(endWebhook))

	if created.Load() == 0 || recoveries.Load() == 0 || admitted.Load() == 0 {
		t.Fatal("no traffic succeeded")
	}
	// A create that failed with an error answer may still have committed (the answer was lost),
	// but none that succeeded may be missing.
	if int64(listed) < created.Load() || int64(listed) > created.Load()+createFailed.Load() {
		t.Errorf("%d identities listed, want between %d (created) and %d (created + failed)", listed, created.Load(), created.Load()+createFailed.Load())
	}
	// As with identities, a refused request may have queued its mail before its answer was lost.
	if int64(sent) < recoveries.Load() || int64(sent) > recoveries.Load()+recoveryFailed.Load() || abandoned != 0 || queued != 0 {
		t.Errorf("courier: %d sent, %d abandoned, %d queued; want every one of the %d accepted requests sent", sent, abandoned, queued, recoveries.Load())
	}
	if delivered != sent {
		t.Errorf("Mailpit received %d mails, Kratos sent %d: want each delivered exactly once", delivered, sent)
	}
	if admitFailed.Load() != 0 || uninj.Load() != 0 {
		t.Errorf("%d labelled pods refused, %d not injected: want 0", admitFailed.Load(), uninj.Load())
	}
	got, err := s.CP.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := instance.ContainerStatus(got, inject.ContainerKratos); st == nil || st.RestartCount != 0 {
		t.Errorf("Kratos container %+v: want it never restarted", st)
	}
	// Growth, not a timing: memory that doubles after warm-up over a soak is a leak to look at.
	for _, r := range []struct {
		name       string
		warm, last int64
	}{{"Kratos", warmKratos, endKratos}, {"webhook", warmWebhook, endWebhook}} {
		if r.warm > 0 && r.last > 2*r.warm {
			t.Errorf("%s RSS grew from %s to %s", r.name, mib(r.warm), mib(r.last))
		}
	}
}

// courierStatus counts Kratos's courier messages by status (all pages).
func courierStatus(t *testing.T, ctx context.Context, admin *kratos.APIClient) (sent, abandoned, queued int) {
	t.Helper()
	token := ""
	for {
		req := admin.CourierAPI.ListCourierMessages(ctx).PageSize(1000)
		if token != "" {
			req = req.PageToken(token)
		}
		msgs, resp, err := req.Execute()
		if err != nil {
			t.Fatalf("list courier messages: %v", err)
		}
		for _, msg := range msgs {
			switch msg.Status {
			case kratos.COURIERMESSAGESTATUS_SENT:
				sent++
			case kratos.COURIERMESSAGESTATUS_ABANDONED:
				abandoned++
			default:
				queued++
			}
		}
		if token = nextPageToken(resp.Header.Get("Link")); token == "" {
			return
		}
	}
}

// countIdentities lists every identity, following pagination.
func countIdentities(t *testing.T, ctx context.Context, admin *kratos.APIClient) int {
	t.Helper()
	n, token := 0, ""
	for {
		req := admin.IdentityAPI.ListIdentities(ctx).PageSize(1000)
		if token != "" {
			req = req.PageToken(token)
		}
		ids, resp, err := req.Execute()
		if err != nil {
			t.Fatalf("list identities: %v", err)
		}
		n += len(ids)
		if token = nextPageToken(resp.Header.Get("Link")); token == "" {
			return n
		}
	}
}

// nextPageToken reads page_token from the rel="next" entry of a Link header.
func nextPageToken(link string) string {
	for _, part := range strings.Split(link, ",") {
		if !strings.Contains(part, `rel="next"`) {
			continue
		}
		if i := strings.Index(part, "page_token="); i >= 0 {
			v := part[i+len("page_token="):]
			if j := strings.IndexAny(v, "&>"); j >= 0 {
				v = v[:j]
			}
			return v
		}
	}
	return ""
}

// podProcessRSS is the resident memory of the process named comm in the pod with that UID on
// the real node (found through its cgroup), 0 if there is none.
func podProcessRSS(t *testing.T, uid, comm string) int64 {
	t.Helper()
	pid := podProcess(uid, comm)
	if pid == 0 {
		t.Logf("no %s process found for pod %s", comm, uid)
		return 0
	}
	return procRSS(pid)
}
