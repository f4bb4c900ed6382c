package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/kratos-injector/kratos-injector/charts"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// TestHelmInstallUpgradeUninstall installs the chart (charts/kratos-injector) with Helm's library
// on the bed, the way a user runs `helm install`, with the image `make image` built (imported
// into the real node's containerd as testbed.InjectorImage) and self-signed TLS:
//
//   - the webhook's two pods run on the real node and become Ready; a labelled Deployment gets a
//     Ready Kratos whose kratos-config container runs the webhook's own image (the chart passes
//     no --injector-image: the webhook read it from its pod);
//   - `helm upgrade` with a changed value (logLevel) rolls the webhook (maxUnavailable 0) while
//     a client admits a labelled pod every 100 ms: none fails, every one is injected;
//   - `helm uninstall` runs the pre-delete hook Job for real (`webhook uninstall` in the same
//     image, on the real node), which deletes the webhook configuration before Helm deletes the
//     Service and the Deployment; the client admitting labelled pods throughout sees no failure.
//
// The bed's adaptation is the one TestInstallSelfSigned makes: pods reach the API server through
// a relay (extraEnv KUBERNETES_SERVICE_HOST/PORT and a hostAlias, chart values), since the bed
// has no kube-proxy or cluster DNS.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	start := time.Now()
	s, n := node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	installWaitNamespaceGone(t, ctx, s, installNS)
	relay := installAPIRelay(t, s)
	appNS := installNamespace(t, s, "helm-app")
	t.Cleanup(func() { installUninstall(t, s, appNS) })

	kubeconfig, ns := s.CP.Kubeconfig, installNS
	cfg := &action.Configuration{}
	if err := cfg.Init(&genericclioptions.ConfigFlags{KubeConfig: &kubeconfig, Namespace: &ns}, installNS, "secret",
		func(format string, v ...any) { t.Logf("helm: "+format, v...) }); err != nil {
		t.Fatal(err)
	}
	c, err := charts.Load()
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(testbed.InjectorImage, ":")
	values := func(logLevel string) map[string]any {
		return map[string]any{
			"image":        map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
			"kratosImage":  testbed.KratosImage,
			"logLevel":     logLevel,
			"tls":          map[string]any{"mode": "self-signed"},
			"nodeSelector": map[string]any{"kubernetes.io/hostname": n.Name},
			"hostAliases":  []any{map[string]any{"ip": relay.host, "hostnames": []any{"kubernetes.default.svc"}}},
			"extraEnv": []any{
				map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": "kubernetes.default.svc"},
				map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": fmt.Sprint(relay.port)},
			},
			// Only the install tests' namespaces (the suite's own injector serves the others).
			"webhook": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{installNSLabel: "true"}}},
		}
	}

	// Install.
	inst := action.NewInstall(cfg)
	// The namespace before the release (Helm stores the release there): --create-namespace.
	inst.ReleaseName, inst.Namespace, inst.CreateNamespace, inst.Timeout = "kratos-injector", installNS, true, 3*time.Minute
	if _, err := inst.RunWithContext(ctx, c, values("info")); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	installed := time.Now()
	pods := installWaitWebhookReady(t, ctx, s, 3*time.Minute)
	t.Logf("helm install: webhook pods Ready %s after install", time.Since(installed).Round(time.Millisecond))
	for _, p := range pods {
		if p.Spec.NodeName != n.Name || p.Spec.Containers[0].Image != testbed.InjectorImage {
			t.Errorf("webhook pod %s on %q image %q, want %s on the real node", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image, testbed.InjectorImage)
		}
		if strings.Contains(strings.Join(p.Spec.Containers[0].Args, " "), "--injector-image") {
			t.Errorf("webhook pod %s pins --injector-image: the chart's default is the webhook's own image", p.Name)
		}
	}
	quiet := installQuietClient(t, s)
	waitInstalledWebhook(t, ctx, s, quiet, appNS)
	installDeployInjected(t, ctx, s, n, appNS, "helm-first") // kratos-config runs testbed.InjectorImage

	// Upgrade with a changed value: the webhook rolls, admissions never fail.
	stopProbe, report := installAdmissionProbe(ctx, quiet, appNS)
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout = installNS, 3*time.Minute
	before, err := s.CP.Client.AppsV1().Deployments(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{})
	if err != nil {
		stopProbe()
		t.Fatal(err)
	}
	upgrading := time.Now()
	if _, err := up.RunWithContext(ctx, "kratos-injector", c, values("debug")); err != nil {
		stopProbe()
		t.Fatalf("helm upgrade: %v", err)
	}
	if err := waitRolledOut(ctx, s, before.Generation); err != nil {
		stopProbe()
		t.Fatalf("webhook roll after helm upgrade: %v\n%s", err, installWebhookReport(ctx, s))
	}
	time.Sleep(2 * time.Second) // keep admitting a little after the roll
	stopProbe()
	total, failed, notInjected, firstErr := report()
	t.Logf("helm upgrade rolled the webhook in %s; admissions meanwhile: %d, failed %d, not injected %d",
		time.Since(upgrading).Round(time.Millisecond), total, failed, notInjected)
	if total < 10 || failed != 0 || notInjected != 0 {
		t.Errorf("admissions during helm upgrade: %d, %d failed, %d not injected (first error: %v)", total, failed, notInjected, firstErr)
	}
	for _, p := range installWaitWebhookReady(t, ctx, s, time.Minute) {
		if !strings.Contains(strings.Join(p.Spec.Containers[0].Args, " "), "--zap-log-level=debug") {
			t.Errorf("webhook pod %s after the upgrade: args %v, want --zap-log-level=debug", p.Name, p.Spec.Containers[0].Args)
		}
	}
	installDeployInjected(t, ctx, s, n, appNS, "helm-second")

	// Uninstall: the hook deletes the webhook configuration first; no admission fails.
	stopProbe, report = installAdmissionProbe(ctx, quiet, appNS)
	un := action.NewUninstall(cfg)
	un.Timeout, un.Wait = 3*time.Minute, true
	uninstalling := time.Now()
	if _, err := un.Run("kratos-injector"); err != nil {
		stopProbe()
		t.Fatalf("helm uninstall: %v", err)
	}
	time.Sleep(2 * time.Second)
	stopProbe()
	total, failed, _, firstErr = report()
	t.Logf("helm uninstall in %s; admissions meanwhile: %d, failed %d", time.Since(uninstalling).Round(time.Millisecond), total, failed)
	if total < 5 || failed != 0 {
		t.Errorf("admissions during helm uninstall: %d, %d failed (first error: %v): the webhook configuration must go first", total, failed, firstErr)
	}
	if _, err := s.CP.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("webhook configuration after helm uninstall: %v", err)
	}
	if _, err := s.CP.Client.BatchV1().Jobs(installNS).Get(ctx, "kratos-injector-uninstall", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the hook Job is left after it succeeded: %v", err)
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}

// waitRolledOut waits until the webhook Deployment has rolled to a generation after before: every
// replica updated, available, and no old one left.
func waitRolledOut(ctx context.Context, s *stack, before int64) error {
	deadline := time.Now().Add(3 * time.Minute)
	var d *appsv1.Deployment
	var err error
	for time.Now().Before(deadline) {
		d, err = s.CP.Client.AppsV1().Deployments(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{})
		if err == nil && d.Generation > before && d.Status.ObservedGeneration >= d.Generation && d.Spec.Replicas != nil &&
			d.Status.UpdatedReplicas == *d.Spec.Replicas && d.Status.AvailableReplicas == *d.Spec.Replicas && d.Status.Replicas == *d.Spec.Replicas {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("not rolled out after 3m: %+v", d.Status)
}
