package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// TestStatusOnRealNode: the built `kubectl kratos status`, against three Deployments injected by
// the running webhook on the real node, explains each state from what the kubelet reports: a
// Ready pod (SQLite) with its OIDC redirect URI; a pod whose render init container failed on a
// missing Secret key (its one-line termination message); a pod whose Kratos waits for
// `kubectl kratos migrate` (Postgres, migrate manual). It also finds the webhook registration
// and checks its CA bundle (the bed's CA, valid for a day).
func TestStatusOnRealNode(t *testing.T) {
	s, n := node(t)
	webhook(t)
	pg := postgres(t)
	bin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := namespace(t, s, "status")
	cs := s.CP.Client

	db, err := pg.NewDatabase(ctx, "status_accounts", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]map[string]string{
		"accounts-db": {"host": n.IP, "port": fmt.Sprint(db.Port), "username": db.User, "password": db.Password, "dbname": db.Name, "sslmode": "disable"},
		// No password: the render init container fails naming the Secret and the key.
		"pg-incomplete": {"host": n.IP, "port": fmt.Sprint(db.Port), "username": db.User, "dbname": db.Name},
		"github-idp":    {"provider": "github", "client_id": "status-e2e", "client_secret": "status-e2e-secret"},
	} {
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}, createOpts); err != nil {
			t.Fatal(err)
		}
	}
	const publicURL = "https://auth.status.example/"
	for name, ann := range map[string]map[string]string{
		"notes":    {inject.AnnotationIDPSecrets: "github-idp", inject.AnnotationPublicURL: publicURL},
		"broken":   {inject.AnnotationDatabaseSecret: "pg-incomplete"},
		"accounts": {inject.AnnotationDatabaseSecret: "accounts-db", inject.AnnotationMigrate: "manual"},
	} {
		d := deployment(name, 1, map[string]string{injectLabel: "true"}, ann, realNodeSpec(n))
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, createOpts); err != nil {
			t.Fatal(err)
		}
	}

	notes := readyPod(t, ctx, s, ns, "app=notes")
	statusWaitPod(t, ctx, s, ns, "broken", "failed in "+inject.ContainerConfig, func(p *corev1.Pod) bool {
		st := instance.ContainerStatus(p, inject.ContainerConfig)
		if st == nil {
			return false
		}
		for _, term := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
			if term != nil && term.ExitCode != 0 {
				return true
			}
		}
		return false
	})
	statusWaitPod(t, ctx, s, ns, "accounts", "with Kratos running", func(p *corev1.Pod) bool {
		st := instance.ContainerStatus(p, inject.ContainerKratos)
		return st != nil && st.State.Running != nil
	})

	kc := []string{"--kubeconfig", s.CP.Kubeconfig, "-n", ns}
	out := statusRun(t, ctx, bin, append(kc, "-o", "json")...)
	var rep cli.StatusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	byName := map[string]cli.InstanceStatus{}
	for _, in := range rep.Instances {
		byName[in.Name] = in
	}
	if len(rep.Instances) != 3 {
		t.Fatalf("instances %v, want accounts, broken, notes:\n%s", byName, out)
	}
	one := func(name string) cli.PodStatus {
		in := byName[name]
		if len(in.Pods) != 1 {
			t.Fatalf("instance %s has %d pods, want 1:\n%s", name, len(in.Pods), out)
		}
		return in.Pods[0]
	}

	if p := one("notes"); !p.Ready || p.Reason != "" || p.Name != notes.Name || p.KratosImage != testbed.KratosImage || len(p.SpecHash) != 16 {
		t.Errorf("Ready pod: %+v", p)
	}
	if in := byName["notes"]; in.ReadyPods != 1 || len(in.Providers) != 1 || in.Providers[0] != (cli.ProviderStatus{
		Secret: "github-idp", ID: "github", Verified: true, RedirectURI: "https://auth.status.example/self-service/methods/oidc/callback/github"}) {
		t.Errorf("instance notes: %+v", in)
	}
	if p := one("broken"); p.Ready || !strings.HasPrefix(p.Reason, "render failed: ") ||
		!strings.Contains(p.Reason, `"pg-incomplete"`) || !strings.Contains(p.Reason, `"password"`) {
		t.Errorf("pod with a missing Secret key: %+v\n%s", p, testbed.PodReport(ctx, cs, ns, p.Name))
	}
	if p := one("accounts"); p.Ready || p.Reason != "database not migrated: run kubectl kratos migrate" || p.Migrate != "manual" {
		t.Errorf("pod waiting for its migration: %+v\n%s", p, testbed.PodReport(ctx, cs, ns, p.Name))
	}

	var hook *cli.WebhookConfig
	for i := range rep.Webhook.Configurations {
		if rep.Webhook.Configurations[i].Name == "kratos-injector-e2e" {
			hook = &rep.Webhook.Configurations[i]
		}
	}
	if hook == nil || !hook.CAValid || hook.CAExpires == nil || hook.CAExpires.Time.Before(time.Now().Add(time.Hour)) {
		t.Errorf("webhook: %+v", rep.Webhook)
	}

	// The table, as an operator reads it.
	table := statusRun(t, ctx, bin, kc...)
	t.Logf("kubectl kratos status:\n%s", table)
	for _, want := range []string{"render failed: ", "database not migrated: run kubectl kratos migrate",
		"https://auth.status.example/self-service/methods/oidc/callback/github", "kratos-injector-e2e.kratos-injector.io"} {
		if !strings.Contains(table, want) {
			t.Errorf("table does not show %q", want)
		}
	}
}

// statusRun runs the built plugin and returns its standard output; it must succeed.
func statusRun(t *testing.T, ctx context.Context, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, append([]string{"status"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) || err != nil {
		t.Fatalf("kubectl-kratos status %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	t.Logf("kubectl-kratos status %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return out.String()
}

// statusWaitPod waits until the one pod of the Deployment app satisfies ok.
func statusWaitPod(t *testing.T, ctx context.Context, s *stack, ns, app, what string, ok func(*corev1.Pod) bool) {
	t.Helper()
	pods := waitPods(t, s.CP.Client, ns, "app="+app, 60*time.Second, func(p []corev1.Pod) error {
		if len(p) == 0 {
			return fmt.Errorf("no pod yet")
		}
		return nil
	})
	if _, err := testbed.WaitPod(ctx, s.CP.Client, ns, pods[0].Name, 3*time.Minute, what, ok); err != nil {
		t.Fatal(err)
	}
}
