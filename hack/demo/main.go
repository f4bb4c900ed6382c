// Command demo is `make demo`: on a machine with no cluster it starts the test bed's cluster on
// 127.0.0.1 (control plane, a real kubelet node, Postgres, Mailpit), runs the built webhook and
// registers it, applies examples/ so an injected Kratos runs for real, walks through
// `kubectl kratos`, then keeps everything running until Ctrl-C (DEMO_EXIT=1: exit after the walk).
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	kratos "github.com/ory/kratos-client-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		code = 1
	}
	os.Exit(code)
}

func step(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }

func run(ctx context.Context) error {
	start := time.Now()
	b, err := testbed.New("")
	if err != nil {
		return err
	}
	defer func() {
		step("stopping everything the demo started")
		b.Close()
	}()
	step("starting the local cluster (etcd, kube-apiserver, controllers, a real kubelet node)")
	nw, err := b.SetupNetwork()
	if err != nil {
		return err
	}
	const nodeName = "demo-node"
	cp, err := b.StartControlPlane(testbed.ControlPlaneOptions{Controllers: true, NodeNames: []string{nodeName}})
	if err != nil {
		return err
	}
	webhookBin, err := testbed.ProjectBin("webhook")
	if err != nil {
		return err
	}
	node, err := b.StartNode(cp, nw, testbed.NodeOptions{Name: nodeName, WebhookBinary: webhookBin})
	if err != nil {
		return err
	}
	pg, err := b.StartPostgres(testbed.PostgresOptions{ExtraListen: []string{nw.Gateway}, ExtraCIDRs: []string{testbed.BridgeCIDR}})
	if err != nil {
		return err
	}
	mail, err := b.StartMailpit(testbed.MailpitOptions{SMTPListen: nw.Gateway})
	if err != nil {
		return err
	}
	step("running the injector (bin/webhook serve) and registering its MutatingWebhookConfiguration")
	if _, err := b.StartInjector(cp, testbed.InjectorOptions{Name: "kratos-injector"}); err != nil {
		return err
	}
	db, err := pg.NewDatabase(ctx, "demo", "")
	if err != nil {
		return err
	}
	vars := map[string]string{
		"POSTGRES_HOST": node.IP, "POSTGRES_PORT": fmt.Sprint(db.Port), "POSTGRES_USER": db.User,
		"POSTGRES_PASSWORD": db.Password, "POSTGRES_DB": db.Name,
		"SMTP_HOST": mail.SMTPHost, "SMTP_PORT": fmt.Sprint(mail.SMTPPort), "APP_IMAGE": testbed.BusyboxImage,
	}
	root, err := testbed.RepoRoot()
	if err != nil {
		return err
	}
	for _, f := range []string{"secrets.yaml", "deployment.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "examples", f))
		if err != nil {
			return err
		}
		step("applying examples/%s", f)
		if err := cp.Apply(ctx, "default", []byte(os.Expand(string(data), func(k string) string { return vars[k] }))); err != nil {
			return err
		}
	}
	plugin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		return err
	}
	kubectl := func(args ...string) error {
		fmt.Printf("\n$ kubectl kratos %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, plugin, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		return cmd.Run()
	}
	step("waiting for the injected pod: Kratos runs but waits for its database to be migrated")
	pod, err := waitPod(ctx, cp, func(p *testbed.PodView) bool { return p.Running })
	if err != nil {
		return err
	}
	_ = kubectl("status")
	if err := kubectl("migrate"); err != nil {
		return err
	}
	if _, err := testbed.WaitPodReady(ctx, cp.Client, "default", pod, 3*time.Minute); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"status"},
		{"identity", "create-admin", "--username", "admin", "--email", "admin@shop.example", "--name", "Shop Admin"},
		{"identity", "get", "--email", "admin@shop.example"},
		{"identity", "reset-password", "--email", "admin@shop.example"},
	} {
		if err := kubectl(args...); err != nil {
			return err
		}
	}
	step("a self-service recovery flow through Kratos's public port sends a mail to Mailpit")
	if err := recoveryMail(ctx, cp, pod, mail); err != nil {
		return err
	}
	step("demo ready in %s", time.Since(start).Round(time.Second))
	fmt.Printf("  kubeconfig:   %s\n  try:          KUBECONFIG=%s %s identity list\n  Mailpit UI:   %s  (API: %s/api/v1/messages)\n",
		cp.Kubeconfig, cp.Kubeconfig, plugin, mail.APIURL, mail.APIURL)
	if os.Getenv("DEMO_EXIT") != "" {
		return nil
	}
	fmt.Println("\nEverything keeps running; press Ctrl-C to stop it.")
	<-ctx.Done()
	return nil
}

func waitPod(ctx context.Context, cp *testbed.ControlPlane, ok func(*testbed.PodView) bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		list, err := cp.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err == nil && len(list.Items) > 0 {
			v := testbed.View(&list.Items[0])
			if ok(v) {
				return list.Items[0].Name, nil
			}
		}
		select {
		case <-ctx.Done():
			name := ""
			if err == nil && len(list.Items) > 0 {
				name = list.Items[0].Name
			}
			return "", fmt.Errorf("injected pod not running:\n%s", testbed.PodReport(context.Background(), cp.Client, "default", name))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func recoveryMail(ctx context.Context, cp *testbed.ControlPlane, podName string, mail *testbed.Mailpit) error {
	pod, err := cp.Client.CoreV1().Pods("default").Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	fw, err := instance.PortForward(ctx, cp.Config, cp.Client, pod, 4433)
	if err != nil {
		return err
	}
	defer fw.Close()
	conf := kratos.NewConfiguration()
	conf.Servers = kratos.ServerConfigurations{{URL: fw.URL}}
	public := kratos.NewAPIClient(conf)
	flow, _, err := public.FrontendAPI.CreateNativeRecoveryFlow(ctx).Execute()
	if err != nil {
		return fmt.Errorf("recovery flow: %w", err)
	}
	email := "admin@shop.example"
	body := kratos.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(&kratos.UpdateRecoveryFlowWithCodeMethod{Method: "code", Email: &email})
	if _, _, err := public.FrontendAPI.UpdateRecoveryFlow(ctx).Flow(flow.Id).UpdateRecoveryFlowBody(body).Execute(); err != nil {
		return fmt.Errorf("recovery flow: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	msg, err := mail.WaitMessageTo(wctx, email)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "  mail %q from %s <%s> to %s arrived in Mailpit", msg.Subject, msg.From.Name, msg.From.Address, email)
	fmt.Println(buf.String())
	return nil
}
