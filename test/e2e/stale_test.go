package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// A rotated SMTP password: the SMTP server (Mailpit with authentication) takes only the new
// one, the Secret gets it, and the running pod, which rendered the old one, is marked stale by
// `kubectl kratos status` (its mail no longer goes out); `kubectl kratos restart --wait` rolls
// the Deployment as kubectl rollout restart does, and the new pod sends with the new password.
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
	m, err := b.StartMailpit(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, s, "rotate")
	if _, err := s.CP.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "smtp"},
		StringData: map[string]string{"host": m.SMTPHost, "port": fmt.Sprint(m.SMTPPort), "user": user, "password": oldPW,
			"transport_security": "none"}}, createOpts); err != nil {
		t.Fatal(err)
	}
	dep := deployment("rot", 1, map[string]string{injectLabel: "true"}, map[string]string{"kratos-injector.io/smtp-secret": "smtp"}, realNodeSpec(n))
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
	mail(pod, "stale")
	out := kubectlKratos(t, s, ns, "status")
	if !strings.Contains(out, "stale: Secret smtp changed after the config was rendered") {
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
