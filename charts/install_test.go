package charts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/internal/selfimage"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

var (
	cpOnce sync.Once
	cp     *testbed.ControlPlane
	cpErr  error
	theBed *testbed.Bed
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theBed != nil {
		theBed.Close()
	}
	os.Exit(code)
}

// controlPlane is a real etcd + kube-apiserver (RBAC on), no nodes: objects, RBAC and admission
// are real; pods never run.
func controlPlane(t *testing.T) *testbed.ControlPlane {
	t.Helper()
	cpOnce.Do(func() {
		if theBed, cpErr = testbed.New(""); cpErr == nil {
			cp, cpErr = theBed.StartControlPlane(testbed.ControlPlaneOptions{})
		}
	})
	if cpErr != nil {
		t.Fatalf("control plane: %v", cpErr)
	}
	return cp
}

const installNS = "identity-system"

func helmConfig(t *testing.T, cp *testbed.ControlPlane) *action.Configuration {
	t.Helper()
	kubeconfig, ns := cp.Kubeconfig, installNS
	flags := &genericclioptions.ConfigFlags{KubeConfig: &kubeconfig, Namespace: &ns}
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, installNS, "secret", func(format string, v ...any) { t.Logf("helm: "+format, v...) }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// applyCertManagerCRDs installs cert-manager's CRDs from its Go module (cert-manager itself cannot
// run here), so the chart's Issuers and Certificates are validated by their real schemas.
func applyCertManagerCRDs(t *testing.T, ctx context.Context, cp *testbed.ControlPlane) {
	t.Helper()
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	list.Env = append(os.Environ(), "GOWORK=off")
	out, err := list.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("cert-manager's module is not in the module cache: %v", err)
	}
	crds, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "*.yaml"))
	if err != nil || len(crds) < 6 {
		t.Fatalf("cert-manager CRDs in %s: %v %v", dir, crds, err)
	}
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.Apply(ctx, "", b); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
	}
}

// TestInstallUninstall installs the chart with Helm's library (action.Install) in each TLS mode
// against a real API server, checks what it created, then uninstalls it (action.Uninstall, hooks
// on). The pre-delete hook Job cannot run here (no node), so the test plays the Job: when Helm
// has created it, the test checks that nothing else was deleted yet, runs what the Job runs
// (`webhook uninstall`'s selfimage.DeleteWebhookConfiguration) as the hook's ServiceAccount
// (so its RBAC is what is tested), checks the Service is still there (the webhook configuration
// went first), and marks the Job complete; Helm then deletes the rest.
func TestInstallUninstall(t *testing.T) {
	cp := controlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	applyCertManagerCRDs(t, ctx, cp)
	for _, mode := range TLSModes {
		t.Run(mode, func(t *testing.T) {
			start := time.Now()
			c, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			cfg := helmConfig(t, cp)
			inst := action.NewInstall(cfg)
			inst.ReleaseName, inst.Namespace, inst.CreateNamespace, inst.Timeout = "ki", installNS, true, time.Minute
			rel, err := inst.RunWithContext(ctx, c, map[string]any{"tls": map[string]any{"mode": mode}, "replicas": 3})
			if err != nil {
				t.Fatalf("helm install (%s): %v", mode, err)
			}
			t.Logf("installed release %s v%d (%s) in %s", rel.Name, rel.Version, mode, time.Since(start).Round(time.Millisecond))

			cs := cp.Client
			d, err := cs.AppsV1().Deployments(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{})
			if err != nil || *d.Spec.Replicas != 3 || d.Labels["app.kubernetes.io/managed-by"] != "Helm" {
				t.Fatalf("Deployment: %v %+v", err, d)
			}
			mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{})
			if err != nil || mwc.Webhooks[0].ClientConfig.Service.Namespace != installNS {
				t.Fatalf("MutatingWebhookConfiguration: %v", err)
			}
			if _, err := cs.CoreV1().Services(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.RbacV1().Roles(installNS).Get(ctx, "kratos-injector-self", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			if mode == "self-signed" {
				if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "kratos-injector-cabundle", metav1.GetOptions{}); err != nil {
					t.Fatal(err)
				}
			} else if mwc.Annotations["cert-manager.io/inject-ca-from"] != installNS+"/kratos-injector-serving" {
				t.Errorf("inject-ca-from %q", mwc.Annotations["cert-manager.io/inject-ca-from"])
			}
			if _, err := cs.BatchV1().Jobs(installNS).Get(ctx, "kratos-injector-uninstall", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the pre-delete hook Job exists before the uninstall: %v", err)
			}

			hookDone := make(chan error, 1)
			go func() { hookDone <- playHookJob(ctx, cp) }()
			un := action.NewUninstall(cfg)
			un.Timeout = time.Minute
			if _, err := un.Run("ki"); err != nil {
				t.Fatalf("helm uninstall: %v", err)
			}
			if err := <-hookDone; err != nil {
				t.Fatalf("pre-delete hook: %v", err)
			}
			for what, get := range map[string]func() error{
				"MutatingWebhookConfiguration": func() error {
					_, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{})
					return err
				},
				"Deployment": func() error {
					_, err := cs.AppsV1().Deployments(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{})
					return err
				},
				"hook Job": func() error {
					_, err := cs.BatchV1().Jobs(installNS).Get(ctx, "kratos-injector-uninstall", metav1.GetOptions{})
					return err
				},
				"hook ClusterRole": func() error {
					_, err := cs.RbacV1().ClusterRoles().Get(ctx, "kratos-injector-uninstall", metav1.GetOptions{})
					return err
				},
			} {
				if err := get(); !apierrors.IsNotFound(err) {
					t.Errorf("%s after helm uninstall: %v, want not found", what, err)
				}
			}
			t.Logf("%s: install, checks and uninstall in %s", mode, time.Since(start).Round(time.Millisecond))
		})
	}
}

// playHookJob waits for the pre-delete Job, then does what its pod would do, checking the order.
func playHookJob(ctx context.Context, cp *testbed.ControlPlane) error {
	cs := cp.Client
	var job *batchv1.Job
	for job == nil {
		j, err := cs.BatchV1().Jobs(installNS).Get(ctx, "kratos-injector-uninstall", metav1.GetOptions{})
		switch {
		case err == nil:
			job = j
		case !apierrors.IsNotFound(err):
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("no hook Job: %w", ctx.Err())
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The hook runs before Helm deletes anything.
	if _, err := cs.CoreV1().Services(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the Service is gone before the pre-delete hook ran: %w", err)
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the webhook configuration is gone before the hook ran: %w", err)
	}
	spec := job.Spec.Template.Spec
	if got := strings.Join(spec.Containers[0].Args, " "); got != "uninstall --webhook-config-name=kratos-injector" {
		return fmt.Errorf("hook Job args %q", got)
	}
	// As the Job's ServiceAccount, with only the RBAC the chart gave it.
	sa := rest.CopyConfig(cp.Config)
	sa.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + installNS + ":" + spec.ServiceAccountName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + installNS, "system:authenticated"},
	}
	deleted, err := selfimage.DeleteWebhookConfiguration(ctx, kubernetes.NewForConfigOrDie(sa), "kratos-injector")
	if err != nil || !deleted {
		return fmt.Errorf("as %s: deleted %v, %w", sa.Impersonate.UserName, deleted, err)
	}
	if _, err := cs.CoreV1().Services(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the Service went before the webhook configuration: %w", err)
	}
	now := metav1.Now()
	job.Status = batchv1.JobStatus{
		StartTime: &now, CompletionTime: &now, Succeeded: 1,
		Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
		},
	}
	if _, err := cs.BatchV1().Jobs(installNS).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark the hook Job complete: %w", err)
	}
	return nil
}
