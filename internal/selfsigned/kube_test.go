package selfsigned

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
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
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
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

// The names manifests/self-signed gives the webhook configuration and the policy that narrows
// the ServiceAccount's rights on it to the caBundle.
const (
	configName = "kratos-injector"
	policyName = "kratos-injector-cabundle"
)

var (
	installOnce sync.Once
	installErr  error
)

// installed applies manifests/self-signed once per control plane, as `kubectl apply -k` would
// (rendered by kustomize's library, server-side applied): the namespace, the ServiceAccount, the
// RBAC, the webhook configuration and the ValidatingAdmissionPolicy that narrows the
// ServiceAccount to the caBundle (the Deployment gets no pods: no controllers here). It adds a
// second webhook to the configuration, to see that every webhook gets the bundle (with a
// matchCondition, a field without a default), and returns once the API server enforces the
// policy.
func installed(t *testing.T, cp *testbed.ControlPlane) {
	t.Helper()
	installOnce.Do(func() { installErr = install(cp) })
	if installErr != nil {
		t.Fatalf("install manifests/self-signed: %v", installErr)
	}
}

func install(cp *testbed.ControlPlane) error {
	ctx := context.Background()
	manifest, err := testbed.Kustomize("../../manifests/self-signed")
	if err != nil {
		return err
	}
	if err := cp.Apply(ctx, "", manifest); err != nil {
		return err
	}
	mwcs := cp.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := mwcs.Get(ctx, configName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	second := *cfg.Webhooks[0].DeepCopy()
	second.Name = "second.kratos-injector.io"
	second.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "create", Expression: "request.operation == 'CREATE'"}}
	cfg.Webhooks = append(cfg.Webhooks, second)
	if _, err := mwcs.Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return waitPolicy(ctx, asServiceAccount(cp))
}

// waitPolicy returns once the API server enforces the policy, which it loads asynchronously: a
// (dry-run) patch by the ServiceAccount that widens the webhook is refused by the policy.
func waitPolicy(ctx context.Context, sa kubernetes.Interface) error {
	widen := []byte(`[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, configName, types.JSONPatchType, widen,
			metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		if refusedByPolicy(err) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return fmt.Errorf("policy %s not enforced 30s after it was applied: a widening patch by the ServiceAccount passed", policyName)
			}
			return fmt.Errorf("policy %s not enforced 30s after it was applied: a widening patch by the ServiceAccount: %w", policyName, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// refusedByPolicy: the request was denied by the policy (not by RBAC, not by validation).
func refusedByPolicy(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), fmt.Sprintf("ValidatingAdmissionPolicy '%s' with binding '%s' denied request: ", policyName, policyName))
}

// asServiceAccount acts as the webhook's ServiceAccount, with only what rbac.yaml grants it.
func asServiceAccount(cp *testbed.ControlPlane) kubernetes.Interface {
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:kratos-injector:kratos-injector",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kratos-injector", "system:authenticated"},
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// TestAgainstAPIServer runs managers as the webhook's ServiceAccount against a real API server
// with manifests/self-signed installed (its RBAC and its caBundle policy in force): replicas
// racing to create the Secret agree on one; the caBundle of every webhook follows the CA;
// renewals (asked and due) and a CA rotation reach the Secret, the files and the caBundle; the
// ServiceAccount can touch nothing else.
func TestAgainstAPIServer(t *testing.T) {
	cp := controlPlane(t)
	admin := cp.Client
	installed(t, cp)
	sa := asServiceAccount(cp)
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

// TestCABundlePolicy: manifests/self-signed/cabundle-policy.yaml on a real API server. As the
// webhook's ServiceAccount, the manager's own caBundle patch passes; a patch that changes
// anything else of the configuration (a rule, a selector, failurePolicy, the service, a webhook,
// the metadata), even together with a caBundle, is refused by the policy and changes nothing;
// so are creating, deleting and updating webhook configurations where a wider RBAC grant would
// allow it. Any other user still changes anything.
func TestCABundlePolicy(t *testing.T) {
	cp := controlPlane(t)
	installed(t, cp)
	admin, sa := cp.Client, asServiceAccount(cp)
	ctx := context.Background()
	mwcs := admin.AdmissionregistrationV1().MutatingWebhookConfigurations()
	getConfig := func() *admissionregistrationv1.MutatingWebhookConfiguration {
		t.Helper()
		cfg, err := mwcs.Get(ctx, configName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	// The manager's own patch, as the ServiceAccount: a new CA next to the current bundle (what a
	// CA rotation publishes) on every webhook. Nothing else changes.
	before := getConfig()
	_, _, caPEM, err := issueCA(time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(caPEM, before.Webhooks[0].ClientConfig.CABundle...)
	o := testOptions(&clock{}, t.TempDir())
	o.Client, o.Log = sa, testr.New(t)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.patchCABundle(ctx, bundle); err != nil {
		t.Fatalf("the manager's caBundle patch, as the ServiceAccount: %v", err)
	}
	after := getConfig()
	if len(after.Webhooks) != 2 {
		t.Fatalf("%d webhooks, want 2", len(after.Webhooks))
	}
	for _, w := range after.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
			t.Errorf("webhook %s: caBundle not patched", w.Name)
		}
	}
	if !equalButCABundle(before, after) {
		t.Errorf("the caBundle patch changed more than the caBundle:\nbefore %+v\nafter  %+v", before.Webhooks, after.Webhooks)
	}

	// Anything else, as the ServiceAccount (with its RBAC: a patch): refused by the policy, and
	// the configuration stays as it was.
	for what, patch := range map[string]string{
		"add UPDATE to the rules":                       `[{"op": "add", "path": "/webhooks/0/rules/0/operations/-", "value": "UPDATE"}]`,
		"send every resource":                           `[{"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": ["*"]}]`,
		"drop the objectSelector (every pod)":           `[{"op": "remove", "path": "/webhooks/0/objectSelector"}]`,
		"change the objectSelector":                     `[{"op": "replace", "path": "/webhooks/0/objectSelector/matchLabels", "value": {"app": "payments"}}]`,
		"drop the namespaceSelector":                    `[{"op": "remove", "path": "/webhooks/0/namespaceSelector"}]`,
		"failurePolicy Ignore":                          `[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]`,
		"another service":                               `[{"op": "replace", "path": "/webhooks/0/clientConfig/service/namespace", "value": "default"}]`,
		"another path":                                  `[{"op": "replace", "path": "/webhooks/0/clientConfig/service/path", "value": "/other"}]`,
		"a URL instead of the service":                  `[{"op": "remove", "path": "/webhooks/0/clientConfig/service"}, {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://attacker.example/mutate"}]`,
		"a matchCondition":                              `[{"op": "add", "path": "/webhooks/0/matchConditions", "value": [{"name": "x", "expression": "true"}]}]`,
		"the second webhook's timeout":                  `[{"op": "replace", "path": "/webhooks/1/timeoutSeconds", "value": 30}]`,
		"drop the second webhook's matchConditions":     `[{"op": "remove", "path": "/webhooks/1/matchConditions"}]`,
		"remove a webhook":                              `[{"op": "remove", "path": "/webhooks/1"}]`,
		"swap the webhooks":                             `[{"op": "move", "from": "/webhooks/1", "path": "/webhooks/0"}]`,
		"a label":                                       `[{"op": "add", "path": "/metadata/labels/extra", "value": "x"}]`,
		"an annotation":                                 `[{"op": "add", "path": "/metadata/annotations", "value": {"cert-manager.io/inject-ca-from": "kratos-injector/x"}}]`,
		"a caBundle together with a wider rule":         fmt.Sprintf(`[{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": %q}, {"op": "add", "path": "/webhooks/0/rules/0/operations/-", "value": "UPDATE"}]`, base64.StdEncoding.EncodeToString(caPEM)),
		"a new webhook seeing every pod":                `[{"op": "add", "path": "/webhooks/-", "value": {"name": "all.kratos-injector.io", "admissionReviewVersions": ["v1"], "sideEffects": "None", "clientConfig": {"service": {"name": "kratos-injector", "namespace": "kratos-injector"}}, "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}}]`,
		"a strategic merge patch of the second webhook": `{"webhooks": [{"name": "second.kratos-injector.io", "failurePolicy": "Ignore"}]}`,
	} {
		pt := types.JSONPatchType
		if strings.HasPrefix(patch, "{") {
			pt = types.StrategicMergePatchType
		}
		_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, configName, pt, []byte(patch), metav1.PatchOptions{FieldManager: FieldManager})
		if !refusedByPolicy(err) {
			t.Errorf("%s, as the ServiceAccount: %v, want refused by the policy %s", what, err, policyName)
		} else if what == "add UPDATE to the rules" {
			t.Logf("%s, as the ServiceAccount: %v", what, err)
		}
	}
	if got := getConfig(); got.ResourceVersion != after.ResourceVersion {
		t.Errorf("refused patches changed the configuration:\n%+v", got.Webhooks)
	}

	// A wider RBAC grant by mistake (create, update, delete on every webhook configuration): the
	// policy still refuses all but the caBundle of its own configuration.
	wide := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kratos-injector-too-wide"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
			Verbs: []string{"get", "create", "update", "patch", "delete"},
		}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, wide, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: wide.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: wide.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kratos-injector", Namespace: "kratos-injector"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(ctx, wide.Name, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(ctx, wide.Name, metav1.DeleteOptions{})
	})
	none := admissionregistrationv1.SideEffectClassNone
	other := func(name string) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
		cc := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "kratos-injector", Name: "kratos-injector"}}
		return &admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "all.example.com", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, ClientConfig: cc}},
			}, &admissionregistrationv1.ValidatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "all.example.com", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, ClientConfig: cc}},
			}
	}
	// RBAC's caches take a moment to see the grant: until then RBAC refuses first.
	mwc, vwc := other("kratos-injector-extra")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
		if refusedByPolicy(err) {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("create a webhook configuration with a wide grant, as the ServiceAccount: %v, want refused by the policy", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	admins, _ := other("admins-config")
	if _, err := mwcs.Create(ctx, admins, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mwcs.Delete(ctx, admins.Name, metav1.DeleteOptions{}) })
	widened := getConfig()
	widened.Webhooks[0].Rules[0].Operations = append(widened.Webhooks[0].Rules[0].Operations, admissionregistrationv1.Update)
	adminsBundle := fmt.Sprintf(`[{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": %q}]`, base64.StdEncoding.EncodeToString(caPEM))
	saMWCs, saVWCs := sa.AdmissionregistrationV1().MutatingWebhookConfigurations(), sa.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	for what, err := range map[string]error{
		"create a validating webhook configuration":   get(saVWCs.Create(ctx, vwc, metav1.CreateOptions{})),
		"update its configuration with a wider rule":  get(saMWCs.Update(ctx, widened, metav1.UpdateOptions{})),
		"delete its configuration":                    saMWCs.Delete(ctx, configName, metav1.DeleteOptions{}),
		"patch the caBundle of another configuration": get(saMWCs.Patch(ctx, admins.Name, types.JSONPatchType, []byte(adminsBundle), metav1.PatchOptions{})),
		"delete another configuration":                saMWCs.Delete(ctx, admins.Name, metav1.DeleteOptions{}),
	} {
		if !refusedByPolicy(err) {
			t.Errorf("%s with a wide grant, as the ServiceAccount: %v, want refused by the policy", what, err)
		}
	}
	// ... but an update that changes only the caBundle passes.
	rebundled := getConfig()
	for i := range rebundled.Webhooks {
		rebundled.Webhooks[i].ClientConfig.CABundle = before.Webhooks[i].ClientConfig.CABundle
	}
	if _, err := saMWCs.Update(ctx, rebundled, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		t.Errorf("a caBundle-only update with a wide grant, as the ServiceAccount: %v", err)
	}

	// Anyone else (here an administrator) still changes what they like: the policy matches the
	// ServiceAccount only.
	current := getConfig()
	restore := current.DeepCopy()
	patched, err := mwcs.Patch(ctx, configName, types.JSONPatchType, []byte(`[
		{"op": "add", "path": "/webhooks/0/rules/0/operations/-", "value": "UPDATE"},
		{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"},
		{"op": "remove", "path": "/webhooks/0/objectSelector"},
		{"op": "add", "path": "/metadata/labels/extra", "value": "x"}]`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("an administrator's patch: %v", err)
	}
	restore.ResourceVersion = patched.ResourceVersion
	if _, err := mwcs.Update(ctx, restore, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("restore the configuration: %v", err)
	}
	if got := getConfig(); !equalButCABundle(got, current) || got.Webhooks[0].FailurePolicy == nil || *got.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("restored configuration differs: %+v", got.Webhooks)
	}
	if _, err := mwcs.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Errorf("an administrator's create: %v", err)
	}
	if err := mwcs.Delete(ctx, mwc.Name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("an administrator's delete: %v", err)
	}
}

// equalButCABundle: two configurations are the same but for their webhooks' caBundle (and the
// metadata the API server maintains).
func equalButCABundle(a, b *admissionregistrationv1.MutatingWebhookConfiguration) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	for _, c := range []*admissionregistrationv1.MutatingWebhookConfiguration{a, b} {
		c.ResourceVersion, c.Generation, c.ManagedFields = "", 0, nil
		for i := range c.Webhooks {
			c.Webhooks[i].ClientConfig.CABundle = nil
		}
	}
	return equality.Semantic.DeepEqual(a, b)
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
