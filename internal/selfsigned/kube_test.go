package selfsigned

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The API server tests share one control plane (etcd + kube-apiserver, RBAC on).
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

// install creates what the self-signed overlay relies on, from the manifests themselves: the
// namespace, the RBAC of manifests/self-signed/rbac.yaml and the webhook configuration of
// manifests/base (with a second webhook, to see that every webhook gets the bundle).
func install(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kratos-injector"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, o := range decodeFile(t, "../../manifests/self-signed/rbac.yaml") {
		var err error
		switch o := o.(type) {
		case *rbacv1.Role:
			_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected %T in rbac.yaml", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	objs := decodeFile(t, "../../manifests/base/mutatingwebhookconfiguration.yaml")
	mwc := objs[0].(*admissionregistrationv1.MutatingWebhookConfiguration)
	second := *mwc.Webhooks[0].DeepCopy()
	second.Name = "second.kratos-injector.io"
	mwc.Webhooks = append(mwc.Webhooks, second)
	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func decodeFile(t *testing.T, path string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []runtime.Object
	for _, doc := range strings.Split(string(b), "\n---\n") {
		j, err := utilyaml.ToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		o, _, err := scheme.Codecs.UniversalDeserializer().Decode(j, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, o)
	}
	return out
}

// asServiceAccount acts as the webhook's ServiceAccount, with only what rbac.yaml grants it.
func asServiceAccount(t *testing.T, cp *testbed.ControlPlane) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:kratos-injector:kratos-injector",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kratos-injector", "system:authenticated"},
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAgainstAPIServer runs managers as the webhook's ServiceAccount against a real API server:
// replicas racing to create the Secret agree on one; the caBundle of every webhook follows the
// CA; renewals (asked and due) and a CA rotation reach the Secret, the files and the caBundle;
// the ServiceAccount can touch nothing else.
func TestAgainstAPIServer(t *testing.T) {
	cp := controlPlane(t)
	admin := cp.Client
	install(t, admin)
	sa := asServiceAccount(t, cp)
	ctx := context.Background()
	c := &clock{}

	newManager := func(name string) *Manager {
		o := testOptions(c, filepath.Join(t.TempDir(), name))
		o.Client, o.Log = sa, testr.New(t).WithName(name)
		m, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	replicas := []*Manager{newManager("a"), newManager("b"), newManager("c")}
	if err := replicas[0].ReadyCheck(nil); err == nil {
		t.Fatal("ready before the first sync")
	}

	// Three replicas start at once.
	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, m := range replicas {
		wg.Go(func() { errs[i] = m.Sync(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	sec := getSecret(t, admin)
	for _, m := range replicas {
		if err := m.ReadyCheck(nil); err != nil {
			t.Errorf("not ready after sync: %v", err)
		}
		select {
		case <-m.Synced():
		default:
			t.Error("Synced not closed")
		}
		if got := readFile(t, m.o.CertDir, KeyTLSCert); !bytes.Equal(got, sec.Data[KeyTLSCert]) {
			t.Error("a replica serves another certificate than the Secret's")
		}
		if got := readFile(t, m.o.CertDir, KeyTLSKey); !bytes.Equal(got, sec.Data[KeyTLSKey]) {
			t.Error("a replica has another key than the Secret's")
		}
	}
	if sec.Type != corev1.SecretTypeTLS || len(sec.Data) != 4 {
		t.Errorf("Secret type %s keys %d", sec.Type, len(sec.Data))
	}
	checkBundle(t, admin, sec, 1, c.now())
	first := leafOf(t, sec)

	// Steady: a sync changes nothing.
	rv := sec.ResourceVersion
	if err := replicas[1].Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if getSecret(t, admin).ResourceVersion != rv {
		t.Error("a steady sync wrote the Secret")
	}

	// Asked renewal (`webhook tls renew`): a new serving certificate, same CA, annotation gone.
	if err := RequestRenewal(ctx, admin, "kratos-injector", "kratos-injector-tls", RenewServing); err != nil {
		t.Fatal(err)
	}
	syncAll(t, ctx, replicas)
	sec = getSecret(t, admin)
	second := leafOf(t, sec)
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || sec.Annotations[AnnotationRenew] != "" {
		t.Fatalf("renewal: serial %x -> %x, annotation %q", first.SerialNumber, second.SerialNumber, sec.Annotations[AnnotationRenew])
	}
	checkBundle(t, admin, sec, 1, c.now())
	for _, m := range replicas {
		if !bytes.Equal(readFile(t, m.o.CertDir, KeyTLSCert), sec.Data[KeyTLSCert]) {
			t.Error("a replica did not pick up the renewed certificate")
		}
	}

	// CA rotation: bundle [new, old] at once (caBundle too); the serving certificate moves to the
	// new CA one grace later; the old CA leaves one grace after that.
	if err := RequestRenewal(ctx, admin, "kratos-injector", "kratos-injector-tls", RenewCA); err != nil {
		t.Fatal(err)
	}
	syncAll(t, ctx, replicas)
	sec = getSecret(t, admin)
	checkBundle(t, admin, sec, 2, c.now())
	if !bytes.Equal(sec.Data[KeyTLSCert], pemOf(second)) {
		t.Error("the serving certificate changed before the new CA was trusted for a grace")
	}
	c.advance(replicas[0].o.RotationGrace + time.Second)
	syncAll(t, ctx, replicas)
	sec = getSecret(t, admin)
	cas := checkBundle(t, admin, sec, 2, c.now())
	if leafOf(t, sec).CheckSignatureFrom(cas[0]) != nil {
		t.Error("after the grace the serving certificate is not from the new CA")
	}
	c.advance(replicas[0].o.RotationGrace + time.Second)
	syncAll(t, ctx, replicas)
	sec = getSecret(t, admin)
	checkBundle(t, admin, sec, 1, c.now())

	// Due after two thirds of its validity: renewed without being asked.
	before := leafOf(t, sec)
	c.advance(DefaultServingValidity * 7 / 10)
	syncAll(t, ctx, replicas)
	if after := leafOf(t, getSecret(t, admin)); after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Error("a certificate due for renewal was kept")
	}

	// Someone blanks the caBundle (re-applied manifests): the next check restores it.
	cfg, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kratos-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks[1].ClientConfig.CABundle = nil
	if _, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	syncAll(t, ctx, replicas[:1])
	checkBundle(t, admin, getSecret(t, admin), 1, c.now())

	// Least privilege: the ServiceAccount reaches nothing but its Secret and its configuration.
	for what, err := range map[string]error{
		"get another Secret":        get(sa.CoreV1().Secrets("kratos-injector").Get(ctx, "other", metav1.GetOptions{})),
		"list Secrets":              get(sa.CoreV1().Secrets("kratos-injector").List(ctx, metav1.ListOptions{})),
		"get a Secret elsewhere":    get(sa.CoreV1().Secrets("default").Get(ctx, "kratos-injector-tls", metav1.GetOptions{})),
		"delete its Secret":         sa.CoreV1().Secrets("kratos-injector").Delete(ctx, "kratos-injector-tls", metav1.DeleteOptions{}),
		"get another configuration": get(sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "other", metav1.GetOptions{})),
		"delete its configuration":  sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "kratos-injector", metav1.DeleteOptions{}),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
	other := newManager("other")
	other.o.SecretName = "other-tls"
	if err := other.Sync(ctx); !apierrors.IsForbidden(err) {
		t.Errorf("a manager on another Secret: %v, want Forbidden", err)
	}
	if err := RequestRenewal(ctx, admin, "kratos-injector", "missing", RenewServing); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("renewal of a missing Secret: %v", err)
	}
}

// TestRun: Run retries until the configuration exists, then Synced closes.
func TestRun(t *testing.T) {
	cp := controlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := fmt.Sprintf("run-%d", time.Now().UnixNano()%1e6)
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := &clock{}
	o := testOptions(c, t.TempDir())
	o.Client, o.SecretNamespace, o.WebhookConfigName, o.Log = cp.Client, ns, ns, testr.New(t)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	time.Sleep(1500 * time.Millisecond)
	if m.ReadyCheck(nil) == nil {
		t.Fatal("ready without a webhook configuration to trust the CA")
	}
	none := admissionregistrationv1.SideEffectClassNone
	if _, err := cp.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "w.example.com", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "kratos-injector"}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("not synced 10s after the configuration appeared")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func syncAll(t *testing.T, ctx context.Context, ms []*Manager) {
	t.Helper()
	for _, m := range ms {
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBundle: ca.crt has n CAs, every webhook's caBundle equals it, and the serving
// certificate verifies against it for the Service's name.
func checkBundle(t *testing.T, c kubernetes.Interface, sec *corev1.Secret, n int, now time.Time) []*x509.Certificate {
	t.Helper()
	cas := parseMaterial(sec.Data).cas
	if len(cas) != n {
		t.Fatalf("ca.crt holds %d CAs, want %d", len(cas), n)
	}
	cfg, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "kratos-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, w := range cfg.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, sec.Data[KeyCACert]) {
			t.Errorf("webhook %s caBundle differs from ca.crt", w.Name)
		}
		pool.AppendCertsFromPEM(w.ClientConfig.CABundle)
	}
	if _, err := leafOf(t, sec).Verify(x509.VerifyOptions{Roots: pool, DNSName: "kratos-injector.kratos-injector.svc", CurrentTime: now}); err != nil {
		t.Errorf("the serving certificate does not verify against the caBundle: %v", err)
	}
	return cas
}

func getSecret(t *testing.T, c kubernetes.Interface) *corev1.Secret {
	t.Helper()
	s, err := c.CoreV1().Secrets("kratos-injector").Get(context.Background(), "kratos-injector-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func leafOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	c, err := parseCert(s.Data[KeyTLSCert])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get[T any](_ T, err error) error { return err }
