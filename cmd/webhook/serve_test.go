package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// TestServe runs the real server over TLS on loopback, as the API server calls it: a review
// is patched, /healthz and /readyz answer, metrics count, and SIGTERM-like cancellation turns
// /readyz red before the server stops.
func TestServe(t *testing.T) {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	dir := t.TempDir()
	writeCert(t, dir)
	o := &serveOptions{
		bindAddress: "127.0.0.1", port: freePort(t), certDir: dir,
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), probeAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		kratosImage: inject.DefaultKratosImage, injectorImage: "localhost/kratos-injector:test", tlsMode: tlsModeFiles,
		shutdownDelay: 500 * time.Millisecond,
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, signal := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.run(ctx) }()
	defer func() {
		signal()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	probe := func(path string) int {
		resp, err := http.Get("http://" + o.probeAddr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for probe("/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("not ready after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := probe("/healthz"); c != http.StatusOK {
		t.Fatalf("/healthz %d", c)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",
"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team-a","operation":"CREATE",
"object":{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-abc-","labels":{"kratos-injector.io/inject":"true"}},"spec":{"containers":[{"name":"web","image":"web:1"}]}}}}`
	resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d%s", o.port, MutatePath), "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	var got admissionv1.AdmissionReview
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Response == nil {
		t.Fatalf("decode review: %v", err)
	}
	if !got.Response.Allowed || got.Response.UID != "u-1" || got.Response.PatchType == nil || !bytes.Contains(got.Response.Patch, []byte(`"kratos-config"`)) {
		t.Fatalf("bad response: %+v", got.Response)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s, want HTTP/2 (the API server's protocol)", resp.Proto)
	}

	mresp, err := http.Get("http://" + o.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{"kratos_injector_injections_total 1", `kratos_injector_denials_total{reason="invalid-annotations"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	signal()
	time.Sleep(100 * time.Millisecond)
	if c := probe("/readyz"); c != http.StatusInternalServerError {
		t.Errorf("/readyz %d while shutting down, want 500", c)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestServeValidate(t *testing.T) {
	t.Setenv(podNamespaceEnv, "")
	for _, tc := range []struct {
		mutate func(*serveOptions)
		want   string
	}{
		{func(o *serveOptions) { o.tlsMode = tlsModeSelfSigned }, "--tls-secret-namespace is empty and $POD_NAMESPACE is not set"},
		{func(o *serveOptions) {
			o.tlsMode, o.selfSigned.secretNamespace, o.selfSigned.rotationGrace = tlsModeSelfSigned, "kratos-injector", time.Second
		}, "must exceed the check interval"},
		{func(o *serveOptions) {
			o.tlsMode, o.selfSigned.secretNamespace, o.selfSigned.renewBeforePercent = tlsModeSelfSigned, "kratos-injector", 95
		}, "renew-before percentage"},
		{func(o *serveOptions) { o.tlsMode = "acme" }, "want files or self-signed"},
		{func(o *serveOptions) { o.kratosImage = "Not An Image" }, "--kratos-image"},
		{func(o *serveOptions) { o.port = 0 }, "--port"},
		{func(o *serveOptions) { o.pprofAddr = ":6060" }, "want a loopback address"},
		{func(o *serveOptions) { o.pprofAddr = "10.0.0.1:6060" }, "want a loopback address"},
		{func(o *serveOptions) { o.pprofAddr = "127.0.0.1" }, "--pprof-bind-address"},
	} {
		o := &serveOptions{port: 9443, kratosImage: inject.DefaultKratosImage, injectorImage: "x/y:1", tlsMode: tlsModeFiles,
			certDir: "/tls", selfSigned: defaultSelfSignedOptions()}
		tc.mutate(o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// TestServeFlags pins the flag names and defaults the manifests and the e2e tests rely on.
func TestServeFlags(t *testing.T) {
	fs := newServeCmd().Flags()
	for name, def := range map[string]string{
		"port": "9443", "bind-address": "", "host": "", "cert-dir": filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"metrics-bind-address": ":8080", "health-probe-bind-address": ":8081", "kratos-image": "oryd/kratos:v1.3.1",
		"injector-image": "", "tls-mode": "files", "shutdown-delay": "5s", "zap-log-level": "",
		// --tls-mode=self-signed; manifests/self-signed/rbac.yaml names these objects.
		"kubeconfig": "", "tls-secret-name": "kratos-injector-tls", "tls-secret-namespace": "", "webhook-config-name": "kratos-injector",
		"service-name": "kratos-injector", "service-namespace": "", "tls-ca-validity": "87600h0m0s", "tls-serving-validity": "8760h0m0s",
		"tls-renew-before-percent": "33", "tls-check-interval": "1m0s", "tls-rotation-grace": "2m0s",
	} {
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("no flag --%s", name)
			continue
		}
		if name != "zap-log-level" && f.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", name, f.DefValue, def)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}
