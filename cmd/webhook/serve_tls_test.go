package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/selfsigned"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// TestServeSelfSigned runs `webhook serve --tls-mode=self-signed` against a real API server:
// /readyz fails and the webhook port stays closed until the certificate is in place (here: until
// the webhook configuration exists to trust it); then the server answers over TLS with a
// certificate the configuration's caBundle verifies for the Service's name; `webhook tls renew`
// makes it serve a new certificate without a restart.
func TestServeSelfSigned(t *testing.T) {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	b, err := testbed.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cp, err := b.StartControlPlane(testbed.ControlPlaneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "kratos-injector"
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Setenv(podNamespaceEnv, ns)
	o := &serveOptions{
		bindAddress: "127.0.0.1", port: freePort(t), certDir: t.TempDir(),
		metricsAddr: "0", probeAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		kratosImage: inject.DefaultKratosImage, injectorImage: "localhost/kratos-injector:test", tlsMode: tlsModeSelfSigned,
		shutdownDelay: 0, selfSigned: defaultSelfSignedOptions(),
	}
	o.selfSigned.kubeconfig = cp.Kubeconfig
	o.selfSigned.checkInterval, o.selfSigned.rotationGrace = 300*time.Millisecond, 2*time.Second
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- o.run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	probe := func() int {
		resp, err := http.Get("http://" + o.probeAddr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	webhookAddr := fmt.Sprintf("127.0.0.1:%d", o.port)
	time.Sleep(2 * time.Second)
	if c := probe(); c != http.StatusInternalServerError {
		t.Fatalf("/readyz %d without a webhook configuration, want 500", c)
	}
	if c, err := net.DialTimeout("tcp", webhookAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("the webhook port is open before the certificate is in place")
	}

	none := admissionregistrationv1.SideEffectClassNone
	if _, err := cp.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "kratos-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "inject.kratos-injector.io", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "kratos-injector"}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for probe() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("not ready 15s after the webhook configuration appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The served certificate verifies against the caBundle the server patched.
	served := func() *x509.Certificate {
		cfg, err := cp.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
			t.Fatal("no caBundle")
		}
		conn, err := tls.Dial("tcp", webhookAddr, &tls.Config{RootCAs: pool, ServerName: "kratos-injector.kratos-injector.svc"})
		if err != nil {
			t.Fatalf("TLS with the caBundle: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()

	// `webhook tls renew`: a new serial is served, same process.
	cmd := newTLSCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"renew", "--kubeconfig", cp.Kubeconfig, "-n", ns})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "renewal (serving) requested on Secret kratos-injector/kratos-injector-tls") {
		t.Errorf("tls renew said %q", out.String())
	}
	var now *x509.Certificate
	deadline = time.Now().Add(20 * time.Second)
	for now = served(); now.SerialNumber.Cmp(first.SerialNumber) == 0; now = served() {
		if time.Now().After(deadline) {
			t.Fatal("still serving the old certificate 20s after `webhook tls renew`")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sec, err := cp.Client.CoreV1().Secrets(ns).Get(ctx, "kratos-injector-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if serialOf(t, sec.Data[selfsigned.KeyTLSCert]).Cmp(now.SerialNumber) != 0 {
		t.Error("the served certificate is not the Secret's")
	}

	// Files written where the certwatcher reads them, readable by the process only.
	for _, f := range []string{"tls.crt", "tls.key"} {
		st, err := os.Stat(o.certDir + "/" + f)
		if err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v mode %v", f, err, st.Mode())
		}
	}
}

func serialOf(t *testing.T, certPEM []byte) *big.Int {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM in tls.crt")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}
