package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/selfsigned"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The install tests apply the product's own manifests (manifests/) to the bed. The installed
// webhook and the suite's URL-registered injector (webhook_helpers_test.go) must never both
// serve a pod: the install tests' namespaces carry installSkipDevWebhook, which the suite's
// injector excludes, and the installed configuration is narrowed to namespaces carrying
// installNSLabel.
const (
	installNS             = "kratos-injector"
	installSkipDevWebhook = "kratos-injector-e2e/skip-dev-webhook"
	installNSLabel        = "kratos-injector-e2e/install"
	installWebhookPods    = "app.kubernetes.io/name=kratos-injector,app.kubernetes.io/component=webhook"
	installServiceDNS     = "kratos-injector.kratos-injector.svc"
)

// TestInstallSelfSigned installs manifests/self-signed for real: the webhook runs as two pods of
// the project's image on the real node, creates its CA and certificate, patches its own caBundle,
// and the API server calls it through its Service (at the endpoint pods' IPs: the bed's API
// server routes service webhooks to endpoints). A labelled Deployment elsewhere then gets a
// Ready Kratos. A forced CA rotation moves both replicas to a new certificate from a new CA while
// admissions keep succeeding, and a second Deployment again gets a Ready Kratos.
//
// One adaptation to the bed: without kube-proxy or cluster DNS a pod cannot reach the API server
// at its ClusterIP, so the test relays the bed's bridge address to the API server and points the
// webhook's in-cluster config there (KUBERNETES_SERVICE_HOST/PORT, and a hostAlias so the name
// in the API server's certificate resolves). Everything else is the overlay as shipped, with the
// bed's images and node.
func TestInstallSelfSigned(t *testing.T) {
	start := time.Now()
	s, n := node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	t.Logf("bed ready in %s", time.Since(start).Round(time.Millisecond))
	c := s.CP.Client
	installWaitNamespaceGone(t, ctx, s, installNS)

	relay := installAPIRelay(t, s)
	manifest := renderInstall(t, "self-signed", fmt.Sprintf(`
patches:
- target:
    kind: Deployment
    name: kratos-injector
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--kratos-image=%[1]s"}
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--tls-check-interval=1s"}
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--tls-rotation-grace=4s"}
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--shutdown-delay=1s"}
- patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: kratos-injector
      namespace: kratos-injector
    spec:
      template:
        spec:
          nodeSelector:
            kubernetes.io/hostname: %[2]s
          hostAliases:
          - ip: %[3]s
            hostnames: [kubernetes.default.svc]
          containers:
          - name: webhook
            env:
            - name: KUBERNETES_SERVICE_HOST
              value: kubernetes.default.svc
            - name: KUBERNETES_SERVICE_PORT
              value: "%[4]d"
%[5]s`, testbed.KratosImage, n.Name, relay.host, relay.port, narrowToInstallNamespaces))

	appNS := installNamespace(t, s, "install-app")
	t.Cleanup(func() { installUninstall(t, s, appNS) })
	if err := s.CP.Apply(ctx, "", manifest); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()

	// Two replicas Ready: /readyz passes only once the certificate is in place.
	pods := installWaitWebhookReady(t, ctx, s, 3*time.Minute)
	t.Logf("webhook pods Ready %s after apply (relay carried %d API connections)", time.Since(applied).Round(time.Millisecond), relay.conns.Load())
	for _, p := range pods {
		if p.Spec.NodeName != n.Name || p.Spec.Containers[0].Image != testbed.InjectorImage {
			t.Errorf("webhook pod %s on %q image %q, want the project's image on the real node", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image)
		}
	}
	sec := installTLSSecret(t, ctx, s)
	cas, leaf := installSecretCerts(t, sec)
	if len(cas) != 1 || leaf.CheckSignatureFrom(cas[0]) != nil {
		t.Fatalf("Secret: %d CAs, serving certificate from the CA: %v", len(cas), leaf.CheckSignatureFrom(cas[0]))
	}
	installCheckCABundle(t, ctx, s, sec.Data[selfsigned.KeyCACert])
	for _, p := range pods {
		if got := installServedSerial(t, p.Status.PodIP, sec.Data[selfsigned.KeyCACert]); got != leaf.SerialNumber.String() {
			t.Errorf("pod %s serves serial %s, want the Secret's %s", p.Name, got, leaf.SerialNumber)
		}
	}

	// The API server calls the installed webhook: a labelled Deployment gets a Ready Kratos.
	quiet := installQuietClient(t, s)
	waitInstalledWebhook(t, ctx, s, quiet, appNS)
	first := time.Now()
	installDeployInjected(t, ctx, s, n, appNS, "first")
	t.Logf("first injected Deployment Ready in %s", time.Since(first).Round(time.Millisecond))

	// Forced renewal, with a new CA (the path where the caBundle changes), while admissions run.
	stopProbe, probeReport := installAdmissionProbe(ctx, quiet, appNS)
	rotate := time.Now()
	if err := selfsigned.RequestRenewal(ctx, c, installNS, "kratos-injector-tls", selfsigned.RenewCA); err != nil {
		stopProbe()
		t.Fatal(err)
	}
	var newLeaf *x509.Certificate
	var newSec *corev1.Secret
	deadline := time.Now().Add(2 * time.Minute)
	for {
		newSec = installTLSSecret(t, ctx, s)
		newCAs, l := installSecretCerts(t, newSec)
		done := len(newCAs) == 1 && !newCAs[0].Equal(cas[0]) && l.CheckSignatureFrom(newCAs[0]) == nil &&
			newSec.Annotations[selfsigned.AnnotationRenew] == "" && installCABundleIs(ctx, s, newSec.Data[selfsigned.KeyCACert])
		if done {
			for _, p := range pods {
				if installServedSerialErr(p.Status.PodIP, newSec.Data[selfsigned.KeyCACert]) != l.SerialNumber.String() {
					done = false
				}
			}
		}
		if done {
			newLeaf = l
			break
		}
		if time.Now().After(deadline) {
			stopProbe()
			t.Fatalf("CA rotation not complete after 2m: %d CAs, annotation %q\n%s", len(newCAs), newSec.Annotations[selfsigned.AnnotationRenew], installWebhookReport(ctx, s))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("CA rotation complete in %s (new CA, new serving certificate on both replicas, old CA dropped)", time.Since(rotate).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // keep admitting a little after the switch
	stopProbe()
	total, failed, notInjected, firstErr := probeReport()
	t.Logf("admissions during the rotation: %d, failed %d, not injected %d", total, failed, notInjected)
	if total < 10 || failed != 0 || notInjected != 0 {
		t.Errorf("admissions during the rotation: %d, %d failed, %d not injected (first error: %v)", total, failed, notInjected, firstErr)
	}
	if newLeaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("the serving certificate kept its serial")
	}

	// And the renewed webhook still injects for real.
	second := time.Now()
	installDeployInjected(t, ctx, s, n, appNS, "second")
	t.Logf("second injected Deployment Ready in %s; whole test %s", time.Since(second).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	t.Run("1000 pods while a webhook replica restarts", func(t *testing.T) {
		loadNS := installNamespace(t, s, "install-load")
		t.Cleanup(func() {
			_ = s.CP.Client.CoreV1().Namespaces().Delete(context.Background(), loadNS, metav1.DeleteOptions{})
		})
		installLoad(t, s, loadNS)
	})

	t.Run("webhook unavailable: labelled pods refused, unlabelled unaffected", func(t *testing.T) {
		installWebhookDown(t, s, appNS)
	})
}

// installWebhookDown scales the installed webhook to zero: the API server then refuses labelled
// pods (failurePolicy Fail) with a message naming the webhook, and admits unlabelled ones, which
// never reach it (objectSelector).
func installWebhookDown(t *testing.T, s *stack, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := s.CP.Client
	scale := func(n int32) {
		t.Helper()
		sc, err := c.AppsV1().Deployments(installNS).GetScale(ctx, "kratos-injector", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = n
		if _, err := c.AppsV1().Deployments(installNS).UpdateScale(ctx, "kratos-injector", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scale(0)
	defer func() {
		scale(2)
		installWaitWebhookReady(t, ctx, s, 2*time.Minute)
	}()
	waitPods(t, c, installNS, installWebhookPods, 2*time.Minute, func(p []corev1.Pod) error {
		if len(p) > 0 {
			return fmt.Errorf("%d webhook pods left", len(p))
		}
		return nil
	})
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var err error
	deadline := time.Now().Add(time.Minute)
	for {
		// The API server's view of the endpoints follows the pods' removal.
		_, err = c.CoreV1().Pods(ns).Create(ctx, installProbePod(), dry)
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err == nil || !strings.Contains(err.Error(), "inject.kratos-injector.io") {
		t.Fatalf("labelled pod with the webhook down: %v, want a refusal naming webhook inject.kratos-injector.io", err)
	}
	t.Logf("labelled pod refused: %v", err)
	plain := installProbePod()
	plain.Labels = map[string]string{"app": "plain"}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, plain, dry); err != nil {
		t.Errorf("unlabelled pod with the webhook down: %v, want admitted", err)
	}
}

// narrowToInstallNamespaces keeps the installed webhook to the install tests' namespaces.
var narrowToInstallNamespaces = `- target:
    kind: MutatingWebhookConfiguration
    name: kratos-injector
  patch: |-
    - op: add
      path: /webhooks/0/namespaceSelector/matchExpressions/-
      value: {key: ` + installNSLabel + `, operator: In, values: ["true"]}
`

// TestInstallCertManager installs cert-manager's CRDs (from its Go module: the controller itself
// is not available here) and server-side dry-runs manifests/cert-manager: the API server
// validates every object against its schema (the CRDs' for Issuer and Certificate) and admits it.
func TestInstallCertManager(t *testing.T) {
	s := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	list.Dir, list.Env = root, append(os.Environ(), "GOWORK=off")
	out, err := list.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("cert-manager's module is not in the module cache (GOWORK=off go mod download github.com/cert-manager/cert-manager): %v", err)
	}
	crds, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "*.yaml"))
	if err != nil || len(crds) < 6 {
		t.Fatalf("cert-manager CRDs in %s: %v %v", dir, crds, err)
	}
	for _, f := range crds {
		if err := s.CP.Apply(ctx, "", mustRead(t, f)); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
	}
	t.Logf("cert-manager CRDs (%d) applied and established in %s", len(crds), time.Since(start).Round(time.Millisecond))

	// A dry-run cannot create the namespace the other objects go to: create it for real.
	installWaitNamespaceGone(t, ctx, s, installNS)
	manifest := installKustomize(t, installManifestsDir(t, "cert-manager"))
	nsDoc, _, _ := bytes.Cut(manifest, []byte("\n---\n"))
	if !bytes.Contains(nsDoc, []byte("kind: Namespace")) {
		t.Fatalf("the rendered overlay does not start with the Namespace:\n%s", nsDoc)
	}
	if err := s.CP.Apply(ctx, "", nsDoc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.CP.Client.CoreV1().Namespaces().Delete(context.Background(), installNS, metav1.DeleteOptions{})
	})
	dry := time.Now()
	if err := s.CP.DryRun(ctx, "", manifest); err != nil {
		t.Fatalf("server-side dry-run of manifests/cert-manager: %v", err)
	}
	t.Logf("manifests/cert-manager accepted by server-side dry-run in %s", time.Since(dry).Round(time.Millisecond))
	for _, kind := range []string{"kind: Issuer", "kind: Certificate", "kind: MutatingWebhookConfiguration", "cert-manager.io/inject-ca-from"} {
		if !bytes.Contains(manifest, []byte(kind)) {
			t.Errorf("rendered overlay lacks %q", kind)
		}
	}
	// The dry-run is not a no-op: the CRDs' validation rejects a broken Certificate.
	broken := bytes.Replace(manifest, []byte("algorithm: ECDSA"), []byte("algorithm: DSA"), 1)
	if err := s.CP.DryRun(ctx, "", broken); err == nil || !strings.Contains(err.Error(), "algorithm") {
		t.Errorf("a Certificate with privateKey.algorithm DSA: %v, want rejected by the CRD schema", err)
	}
	// Nothing was persisted.
	if _, err := s.CP.Client.AppsV1().Deployments(installNS).Get(ctx, "kratos-injector", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry-run left a Deployment behind: %v", err)
	}
}

// renderInstall renders an overlay of manifests/<overlay> that swaps in the bed's image with
// `images:` alone, as a user's overlay would (the webhook reads its own image from its pod, so
// the injected kratos-config container follows it), plus extra kustomization text.
func renderInstall(t *testing.T, overlay, extra string) []byte {
	t.Helper()
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, installManifestsDir(t, overlay)) // kustomize refuses absolute resource paths
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(testbed.InjectorImage, ":")
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: ghcr.io/kratos-injector/kratos-injector
  newName: %s
  newTag: %s
%s`, rel, name, tag, extra)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out := installKustomize(t, dir)
	if !bytes.Contains(out, []byte("image: "+testbed.InjectorImage)) || bytes.Contains(out, []byte("--injector-image")) {
		t.Fatalf("the rendered overlay does not run the bed's image, or pins --injector-image:\n%s", out)
	}
	return out
}

func installKustomize(t *testing.T, dir string) []byte {
	t.Helper()
	y, err := testbed.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func installManifestsDir(t *testing.T, overlay string) string {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "manifests", overlay)
}

// installNamespace creates a namespace served by the installed webhook only.
func installNamespace(t *testing.T, s *stack, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
	obj := nsObj(ns)
	obj.Labels = map[string]string{installSkipDevWebhook: "true", installNSLabel: "true"}
	if _, err := s.CP.Client.CoreV1().Namespaces().Create(context.Background(), obj, createOpts); err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	return ns
}

// uninstall removes what the self-signed install created, the webhook configuration first so
// no later pod depends on the webhook.
func installUninstall(t *testing.T, s *stack, namespaces ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.CP.Client
	var errs []error
	keep := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	keep(c.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "kratos-injector", metav1.DeleteOptions{}))
	keep(c.RbacV1().ClusterRoleBindings().Delete(ctx, "kratos-injector-cabundle", metav1.DeleteOptions{}))
	keep(c.RbacV1().ClusterRoles().Delete(ctx, "kratos-injector-cabundle", metav1.DeleteOptions{}))
	keep(c.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, "kratos-injector-cabundle", metav1.DeleteOptions{}))
	keep(c.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, "kratos-injector-cabundle", metav1.DeleteOptions{}))
	for _, ns := range append(namespaces, installNS) {
		keep(c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}))
	}
	if len(errs) > 0 {
		t.Errorf("uninstall: %v", errors.Join(errs...))
	}
}

// waitNamespaceGone waits while a namespace from an earlier install test is terminating.
func installWaitNamespaceGone(t *testing.T, ctx context.Context, s *stack, ns string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := s.CP.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if err == nil && got.DeletionTimestamp == nil {
			t.Fatalf("namespace %s exists (not from this test): refusing to install over it", ns)
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s still terminating after 2m: %v", ns, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// installRelay forwards TCP from the bed's bridge address to the API server (127.0.0.1), so pods on the
// real node reach it; the API server's certificate names kubernetes.default.svc.
type installRelay struct {
	host  string
	port  int
	conns atomic.Int64
}

func installAPIRelay(t *testing.T, s *stack) *installRelay {
	t.Helper()
	target := strings.TrimPrefix(s.CP.URL, "https://")
	ln, err := net.Listen("tcp", net.JoinHostPort(network.Gateway, "0"))
	if err != nil {
		t.Fatal(err)
	}
	r := &installRelay{host: network.Gateway, port: ln.Addr().(*net.TCPAddr).Port}
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			open[c] = true
		} else {
			delete(open, c)
		}
	}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			go func() {
				out, err := net.Dial("tcp", target)
				if err != nil {
					in.Close()
					return
				}
				track(in, true)
				track(out, true)
				done := make(chan struct{}, 2)
				pipe := func(dst, src net.Conn) {
					_, _ = io.Copy(dst, src)
					if tc, ok := dst.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
					done <- struct{}{}
				}
				go pipe(out, in)
				go pipe(in, out)
				<-done
				<-done
				in.Close()
				out.Close()
				track(in, false)
				track(out, false)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
	})
	return r
}

// installWaitWebhookReady waits until the installed webhook's two replicas are Ready.
func installWaitWebhookReady(t *testing.T, ctx context.Context, s *stack, timeout time.Duration) []corev1.Pod {
	t.Helper()
	ns, sel, n := installNS, installWebhookPods, 2
	deadline := time.Now().Add(timeout)
	for {
		list, err := s.CP.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil {
			var ready []corev1.Pod
			for i := range list.Items {
				if p := &list.Items[i]; p.DeletionTimestamp == nil && instance.IsReady(p) {
					ready = append(ready, *p)
				}
			}
			if len(ready) >= n {
				return ready
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%d Ready pods %q in %s not reached after %s:\n%s", n, sel, ns, timeout, installWebhookReport(ctx, s))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// webhookReport describes the webhook's pods (state, logs, events) for failure messages.
func installWebhookReport(ctx context.Context, s *stack) string {
	list, err := s.CP.Client.CoreV1().Pods(installNS).List(context.WithoutCancel(ctx), metav1.ListOptions{LabelSelector: installWebhookPods})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range list.Items {
		fmt.Fprintf(&b, "pod %s:\n%s", p.Name, testbed.PodReport(ctx, s.CP.Client, installNS, p.Name))
	}
	if len(list.Items) == 0 {
		evs, _ := s.CP.Client.CoreV1().Events(installNS).List(context.WithoutCancel(ctx), metav1.ListOptions{})
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "  event %s/%s %s: %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}

func installTLSSecret(t *testing.T, ctx context.Context, s *stack) *corev1.Secret {
	t.Helper()
	sec, err := s.CP.Client.CoreV1().Secrets(installNS).Get(ctx, "kratos-injector-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// secretCerts parses the Secret's CA bundle and serving certificate.
func installSecretCerts(t *testing.T, sec *corev1.Secret) ([]*x509.Certificate, *x509.Certificate) {
	t.Helper()
	var cas []*x509.Certificate
	for rest := sec.Data[selfsigned.KeyCACert]; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, c)
	}
	b, _ := pem.Decode(sec.Data[selfsigned.KeyTLSCert])
	if b == nil {
		t.Fatal("no serving certificate in the Secret")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cas, leaf
}

func installCABundleIs(ctx context.Context, s *stack, bundle []byte) bool {
	cfg, err := s.CP.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{})
	if err != nil || len(cfg.Webhooks) == 0 {
		return false
	}
	for _, w := range cfg.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
			return false
		}
	}
	return true
}

func installCheckCABundle(t *testing.T, ctx context.Context, s *stack, bundle []byte) {
	t.Helper()
	if !installCABundleIs(ctx, s, bundle) {
		t.Fatal("the webhook configuration's caBundle is not the Secret's ca.crt")
	}
}

// servedSerial connects to a webhook pod as the API server does (the Service's DNS name,
// verifying against the bundle) and returns the serial it serves.
func installServedSerial(t *testing.T, podIP string, bundle []byte) string {
	t.Helper()
	got := installServedSerialErr(podIP, bundle)
	if strings.HasPrefix(got, "error:") {
		t.Fatalf("TLS to %s: %s", podIP, got)
	}
	return got
}

func installServedSerialErr(podIP string, bundle []byte) string {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(podIP, "9443"), &tls.Config{RootCAs: pool, ServerName: installServiceDNS})
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// waitInstalledWebhook dry-runs a labelled pod in ns until the installed webhook injects it (the
// API server has loaded the configuration and its caBundle).
func waitInstalledWebhook(t *testing.T, ctx context.Context, s *stack, c kubernetes.Interface, ns string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := c.CoreV1().Pods(ns).Create(ctx, installProbePod(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Annotations[inject.AnnotationStatus] != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server never called the installed webhook (last: %v)\n%s", err, installWebhookReport(ctx, s))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// installQuietClient is the admin client without the admission warnings the injector returns
// for each probe pod (no SMTP, no secrets Secret): the probes would flood the test log.
func installQuietClient(t *testing.T, s *stack) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(s.CP.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func installProbePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Labels: map[string]string{injectLabel: "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: testbed.BusyboxImage}}},
	}
}

// admissionProbe admits (dry-run) a labelled pod every 100 ms until stopped, counting failures
// and pods left uninjected.
func installAdmissionProbe(ctx context.Context, c kubernetes.Interface, ns string) (stop func(), report func() (total, failed, notInjected int, firstErr error)) {
	var total, failed, notInjected atomic.Int64
	var firstErr atomic.Value
	stopCh := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stopCh:
				return
			case <-time.After(100 * time.Millisecond):
			}
			got, err := c.CoreV1().Pods(ns).Create(ctx, installProbePod(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			total.Add(1)
			switch {
			case err != nil:
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			case got.Annotations[inject.AnnotationStatus] == "":
				notInjected.Add(1)
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(stopCh); <-done }) }
	report = func() (int, int, int, error) {
		e, _ := firstErr.Load().(error)
		return int(total.Load()), int(failed.Load()), int(notInjected.Load()), e
	}
	return stop, report
}

// deployInjected creates a labelled Deployment on the real node and waits for its Kratos to be
// Ready, with the images the installed webhook was given.
func installDeployInjected(t *testing.T, ctx context.Context, s *stack, n *testbed.Node, ns, name string) {
	t.Helper()
	dep := deployment(name, 1, map[string]string{injectLabel: "true"}, nil, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app="+name)
	images := map[string]string{}
	for _, c := range pod.Spec.InitContainers {
		images[c.Name] = c.Image
	}
	if images[inject.ContainerConfig] != testbed.InjectorImage || images[inject.ContainerKratos] != testbed.KratosImage {
		t.Errorf("pod %s init container images %v, want %s=%s and %s=%s", pod.Name, images,
			inject.ContainerConfig, testbed.InjectorImage, inject.ContainerKratos, testbed.KratosImage)
	}
	if pod.Annotations[inject.AnnotationStatus] == "" {
		t.Errorf("pod %s has no %s annotation", pod.Name, inject.AnnotationStatus)
	}
}
