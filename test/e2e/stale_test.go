package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// A rotated SMTP password and IdP client secret: the SMTP server (Mailpit with authentication)
// takes only the new password, the Secrets get the new values, and the running pod, which
// rendered the old ones, is marked stale by `kubectl kratos status`, naming both Secrets (its mail
// no longer goes out); `kubectl kratos restart --wait` rolls the Deployment as kubectl rollout
// restart does, and the new pod, not stale, sends with the new password.
func TestRotatedSecretStaleThenRestart(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	b := theBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const user, oldPW, newPW = "kratos", "old-Smtp-Pa55word", "new-Smtp-Pa55word"
	authFile := filepath.Join(dir, "smtp-auth")
	if err := os.WriteFile(authFile, []byte(user+":"+oldPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := mailpitOptions()
	opts.Name, opts.AuthFile = "mailpit-rotate", authFile
	// Kratos sends credentials over TLS only: implicit TLS with the bed's own certificate.
	ca, err := testbed.NewCA("rotate-smtp-ca")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteServing(dir, opts.SMTPListen, opts.SMTPListen); err != nil {
		t.Fatal(err)
	}
	opts.TLSCertFile, opts.TLSKeyFile, opts.RequireTLS = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), true
	m, err := b.StartMailpit(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, s, "rotate")
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "smtp"},
		StringData: map[string]string{"host": m.SMTPHost, "port": fmt.Sprint(m.SMTPPort), "user": user, "password": oldPW,
			"transport_security": "tls", "skip_ssl_verify": "true"}}, createOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "idp"},
		StringData: map[string]string{"id": "corp", "provider": "generic", "client_id": "kratos", "client_secret": "old-IdP-Secret-value",
			"issuer_url": "https://idp.bed.example/"}}, createOpts); err != nil {
		t.Fatal(err)
	}
	dep := deployment("rot", 1, map[string]string{injectLabel: "true"}, map[string]string{"kratos-injector.io/smtp-secret": "smtp",
		"kratos-injector.io/idp-secrets": "idp"}, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app=rot")
	mail := func(p *corev1.Pod, email string) {
		t.Helper()
		afw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, p, config.AdminPort)
		if err != nil {
			t.Fatal(err)
		}
		defer afw.Close()
		pfw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, p, config.PublicPort)
		if err != nil {
			t.Fatal(err)
		}
		defer pfw.Close()
		createIdentities(t, ctx, kratosClient(afw.URL), email, 1)
		if err := requestRecovery(ctx, kratosClient(pfw.URL), email+"-0@bed.example"); err != nil {
			t.Fatal(err)
		}
	}
	mail(pod, "before")
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	if _, err := m.WaitMessageTo(wctx, "before-0@bed.example"); err != nil {
		t.Fatalf("mail with the first password: %v", err)
	}
	wcancel()
	if out := kubectlKratos(t, s, ns, "status"); strings.Contains(out, "stale") {
		t.Fatalf("a fresh pod is reported stale:\n%s", out)
	}

	// Rotate: the server takes only the new password, then the Secret gets it.
	if err := os.WriteFile(authFile, []byte(user+":"+newPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Proc.Stop()
	opts.SMTPPort = m.SMTPPort
	if m, err = b.StartMailpit(opts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the Secret's write lands in a later second than the render
	sec, err := s.CP.Client.CoreV1().Secrets(ns).Get(ctx, "smtp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["password"] = []byte(newPW)
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	idp, err := s.CP.Client.CoreV1().Secrets(ns).Get(ctx, "idp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idp.Data["client_secret"] = []byte("new-IdP-Secret-value")
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Update(ctx, idp, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mail(pod, "stale")
	out := kubectlKratos(t, s, ns, "status")
	if !strings.Contains(out, "stale: Secret smtp, Secret idp changed after the config was rendered") {
		t.Fatalf("status does not mark %s stale after the Secret changed:\n%s", pod.Name, out)
	}
	t.Logf("status after the rotation:\n%s", out)
	wctx, wcancel = context.WithTimeout(ctx, 10*time.Second)
	if _, err := m.WaitMessageTo(wctx, "stale-0@bed.example"); err == nil {
		t.Fatal("the stale pod delivered mail with the old password: the rotation was not observed")
	}
	wcancel()

	// Restart: the rollout completes and the new pod mails with the new password.
	start := time.Now()
	out = kubectlKratos(t, s, ns, "restart", "--wait", "--timeout", "3m")
	if !strings.Contains(out, "deployment.apps/rot restarted") || !strings.Contains(out, "deployment.apps/rot successfully rolled out") {
		t.Fatalf("restart output:\n%s", out)
	}
	t.Logf("kubectl kratos restart --wait: %s\n%s", time.Since(start).Round(time.Millisecond), out)
	d, err := s.CP.Client.AppsV1().Deployments(ns).Get(ctx, "rot", metav1.GetOptions{})
	if err != nil || d.Spec.Template.Annotations[instance.RestartedAtAnnotation] == "" {
		t.Fatalf("the Deployment's template has no %s annotation: %v", instance.RestartedAtAnnotation, err)
	}
	pods := waitPods(t, s.CP.Client, ns, "app=rot", 2*time.Minute, func(p []corev1.Pod) error {
		if len(p) != 1 || p[0].Name == pod.Name || !instance.IsReady(&p[0]) {
			return fmt.Errorf("%d pods, want one new Ready pod", len(p))
		}
		return nil
	})
	mail(&pods[0], "after")
	wctx, wcancel = context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := m.WaitMessageTo(wctx, "after-0@bed.example"); err != nil {
		t.Fatalf("mail from the restarted pod with the new password: %v", err)
	}
	if out := kubectlKratos(t, s, ns, "status"); strings.Contains(out, "stale") {
		t.Errorf("the restarted pod is still reported stale:\n%s", out)
	}
}

// Rotated database credentials under traffic, the way that loses nothing with Postgres (one
// password per role, so a changed password fails every new connection of the pods that still
// have the old one): a second role with the first one's rights gets the new password, the
// Secret switches to it, every pod is marked stale, and `kubectl kratos restart --wait` rolls
// the three replicas while a client polls /health/ready on every Ready endpoint of their
// Service, as a Service's proxy routes: it sees no failure. Then the old role loses its login,
// and the new pods, on the new credentials, stay Ready.
func TestRotatedDatabaseCredentialsRollWithoutFailures(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	p := postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := namespace(t, s, "rotate-db")
	db, err := p.NewDatabase(ctx, "rotdb", "rotate-db-Old-Pa55word")
	if err != nil {
		t.Fatal(err)
	}
	createSecrets(t, ctx, s, ns, map[string]map[string]string{"db": dbSecret(db, n.IP)})
	spec := realNodeSpec(n)
	spec.TerminationGracePeriodSeconds = nil // the default 30 s: room for Kratos's preStop
	dep := deployment("rotdb", 3, map[string]string{injectLabel: "true"}, map[string]string{
		"kratos-injector.io/database-secret": "db", "kratos-injector.io/migrate": "auto"}, spec)
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CP.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "rotdb"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "rotdb"}, ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: "public", Port: config.PublicPort}}}}, createOpts); err != nil {
		t.Fatal(err)
	}
	old := waitPods(t, s.CP.Client, ns, "app=rotdb", 4*time.Minute, podsReady(3))

	// The poller: the Service's Ready endpoints (its EndpointSlices), each asked /health/ready.
	var polls, failures atomic.Int64
	var lastFailure atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			slices, err := s.CP.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=rotdb"})
			if err != nil {
				continue
			}
			for _, sl := range slices.Items {
				for _, ep := range sl.Endpoints {
					if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || len(ep.Addresses) == 0 {
						continue
					}
					polls.Add(1)
					resp, err := hc.Get(fmt.Sprintf("http://%s:%d/health/ready", ep.Addresses[0], config.PublicPort))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("%s: %s", ep.Addresses[0], resp.Status)
						}
					}
					if err != nil {
						failures.Add(1)
						lastFailure.Store(err.Error())
					}
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	// Rotate: a new role, member of the old (whose tables Kratos's migrations created), with the
	// new password; then the Secret names it.
	const newPW = "rotate-db-New-Pa55word"
	newUser := db.User + "_next"
	if _, err := p.SQL(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s IN ROLE %s", newUser, testbed.QuoteLiteral(newPW), db.User)); err != nil {
		t.Fatal(err)
	}
	rememberSecret("the rotated database password", newPW)
	time.Sleep(1100 * time.Millisecond)
	sec, err := s.CP.Client.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["username"], sec.Data["password"] = []byte(newUser), []byte(newPW)
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := kubectlKratos(t, s, ns, "status"); strings.Count(out, "stale: Secret db changed") != 3 {
		t.Fatalf("want the 3 pods marked stale after the password changed:\n%s", out)
	}
	start := time.Now()
	out := kubectlKratos(t, s, ns, "restart", "--wait", "--timeout", "5m")
	if !strings.Contains(out, "deployment.apps/rotdb successfully rolled out") {
		t.Fatalf("restart output:\n%s", out)
	}
	rolled := time.Since(start)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	// The old role may no longer log in: what still works runs on the new credentials.
	if _, err := p.SQL(ctx, "postgres", fmt.Sprintf("ALTER ROLE %s NOLOGIN", db.User)); err != nil {
		t.Fatal(err)
	}
	pods := waitPods(t, s.CP.Client, ns, "app=rotdb", time.Minute, podsReady(3))
	for _, np := range pods {
		for _, op := range old {
			if np.Name == op.Name && np.DeletionTimestamp == nil {
				t.Errorf("pod %s survived the restart", np.Name)
			}
		}
	}
	for _, np := range pods {
		if np.DeletionTimestamp == nil {
			if _, err := testbed.WaitPodReady(ctx, s.CP.Client, ns, np.Name, time.Minute); err != nil {
				t.Errorf("after the old role lost its login: %v", err)
			}
		}
	}
	t.Logf("restart --wait rolled 3 replicas in %s; %d polls of /health/ready through the Ready endpoints, %d failed (last: %v)",
		rolled.Round(time.Millisecond), polls.Load(), failures.Load(), lastFailure.Load())
	if failures.Load() != 0 {
		t.Errorf("%d of %d polls failed during the rollout, want 0", failures.Load(), polls.Load())
	}
	if out := kubectlKratos(t, s, ns, "status"); strings.Contains(out, "stale") {
		t.Errorf("pods still stale after the restart:\n%s", out)
	}
}
