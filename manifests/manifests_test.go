package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// render builds a kustomization directory.
func render(t *testing.T, dir string) []byte {
	t.Helper()
	y, err := testbed.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// objects decodes a rendered stream strictly (unknown fields, duplicate fields) into typed objects.
func objects(t *testing.T, stream []byte) []runtime.Object {
	t.Helper()
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := cmv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("strict decoding:\n%s\n: %v", doc, err)
		}
		if gvk.Group == cmv1.SchemeGroupVersion.Group && gvk.Version != cmv1.SchemeGroupVersion.Version {
			t.Errorf("%s: want cert-manager's %s", gvk, cmv1.SchemeGroupVersion)
		}
		out = append(out, obj)
	}
}

type rendered struct {
	deploy  *appsv1.Deployment
	svc     *corev1.Service
	pdb     *policyv1.PodDisruptionBudget
	mwc     *admissionregistrationv1.MutatingWebhookConfiguration
	ns      *corev1.Namespace
	sa      *corev1.ServiceAccount
	roles   []*rbacv1.Role
	croles  []*rbacv1.ClusterRole
	rbs     []*rbacv1.RoleBinding
	crbs    []*rbacv1.ClusterRoleBinding
	vaps    []*admissionregistrationv1.ValidatingAdmissionPolicy
	vapbs   []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	issuers map[string]*cmv1.Issuer
	certs   map[string]*cmv1.Certificate
	all     []runtime.Object
}

func load(t *testing.T, dir string) *rendered {
	t.Helper()
	r := &rendered{issuers: map[string]*cmv1.Issuer{}, certs: map[string]*cmv1.Certificate{}}
	r.all = objects(t, render(t, dir))
	for _, o := range r.all {
		switch o := o.(type) {
		case *appsv1.Deployment:
			r.deploy = o
		case *corev1.Service:
			r.svc = o
		case *policyv1.PodDisruptionBudget:
			r.pdb = o
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			r.mwc = o
		case *corev1.Namespace:
			r.ns = o
		case *corev1.ServiceAccount:
			r.sa = o
		case *rbacv1.Role:
			r.roles = append(r.roles, o)
		case *rbacv1.ClusterRole:
			r.croles = append(r.croles, o)
		case *rbacv1.RoleBinding:
			r.rbs = append(r.rbs, o)
		case *rbacv1.ClusterRoleBinding:
			r.crbs = append(r.crbs, o)
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			r.vaps = append(r.vaps, o)
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			r.vapbs = append(r.vapbs, o)
		case *cmv1.Issuer:
			r.issuers[o.Name] = o
		case *cmv1.Certificate:
			r.certs[o.Name] = o
		default:
			t.Errorf("%s: unexpected kind %T", dir, o)
		}
	}
	for what, missing := range map[string]bool{"Deployment": r.deploy == nil, "Service": r.svc == nil, "PodDisruptionBudget": r.pdb == nil,
		"MutatingWebhookConfiguration": r.mwc == nil, "Namespace": r.ns == nil, "ServiceAccount": r.sa == nil} {
		if missing {
			t.Fatalf("%s renders no %s", dir, what)
		}
	}
	return r
}

const ns = "kratos-injector"

// TestBase checks what both TLS modes share: the Deployment, Service, PDB and webhook
// configuration as the README and docs/architecture.md describe them.
func TestBase(t *testing.T) {
	for _, dir := range []string{"cert-manager", "self-signed"} {
		t.Run(dir, func(t *testing.T) {
			r := load(t, dir)
			for _, o := range r.all {
				if m, ok := o.(interface{ GetNamespace() string }); ok {
					if n := m.GetNamespace(); n != "" && n != ns {
						t.Errorf("%T in namespace %q, want %q", o, n, ns)
					}
				}
			}
			if r.ns.Name != ns || r.ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("namespace %s labels %v", r.ns.Name, r.ns.Labels)
			}
			checkDeployment(t, r.deploy)
			checkService(t, r)
			if r.pdb.Spec.MinAvailable == nil || r.pdb.Spec.MinAvailable.IntValue() != 1 || !selects(r.pdb.Spec.Selector.MatchLabels, r.deploy.Spec.Template.Labels) {
				t.Errorf("PDB %+v", r.pdb.Spec)
			}
			checkWebhookConfig(t, r.mwc)
			// The token is mounted into the webhook's pods only (it reads its own pod).
			if r.sa.AutomountServiceAccountToken == nil || *r.sa.AutomountServiceAccountToken ||
				r.deploy.Spec.Template.Spec.AutomountServiceAccountToken == nil || !*r.deploy.Spec.Template.Spec.AutomountServiceAccountToken {
				t.Error("want the ServiceAccount's token mounted in the webhook's pods and nowhere else")
			}
		})
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0 (failurePolicy Fail)", ru)
	}
	ps := d.Spec.Template.Spec
	aa := ps.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" ||
		!selects(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("anti-affinity %+v: want preferred, on kubernetes.io/hostname, selecting the webhook's pods", aa)
	}
	if psc := ps.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", psc)
	}
	if len(ps.Containers) != 1 || len(ps.InitContainers) != 0 {
		t.Fatalf("containers %d, init containers %d: want one webhook container", len(ps.Containers), len(ps.InitContainers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext %+v: want the restricted profile", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--port=9443", "--cert-dir=/tls", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8080", "--kratos-image=oryd/kratos:v1.3.1"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if c.Args[0] != "serve" || len(c.Command) != 0 {
		t.Errorf("command %q args %q: want the image's entrypoint with `serve ...`", c.Command, args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	// No --injector-image: the webhook reads its own image from its pod (POD_NAME, POD_NAMESPACE),
	// so an image override of any kind reaches the injected kratos-config container too.
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--injector-image") }) {
		t.Errorf("args %q pin --injector-image: the webhook's own image must be the default", args)
	}
	if f := env["POD_NAME"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME %+v: want the downward API's metadata.name", env["POD_NAME"])
	}
	if f := env["POD_NAMESPACE"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE %+v: want the downward API's metadata.namespace", env["POD_NAMESPACE"])
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["webhook"] != 9443 || ports["probes"] != 8081 || ports["metrics"] != 8080 {
		t.Errorf("ports %v", ports)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "probes" {
			t.Errorf("probe %+v: want GET %s on the probes port", probe, path)
		}
	}
}

func checkService(t *testing.T, r *rendered) {
	t.Helper()
	s := r.svc
	if s.Name != "kratos-injector" || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 443 || s.Spec.Ports[0].TargetPort.String() != "webhook" {
		t.Errorf("service %s ports %+v: want 443 -> the webhook port (9443)", s.Name, s.Spec.Ports)
	}
	if !selects(s.Spec.Selector, r.deploy.Spec.Template.Labels) {
		t.Errorf("service selector %v does not select the pods %v", s.Spec.Selector, r.deploy.Spec.Template.Labels)
	}
}

func checkWebhookConfig(t *testing.T, c *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	if c.Name != "kratos-injector" || len(c.Webhooks) != 1 {
		t.Fatalf("configuration %s with %d webhooks", c.Name, len(c.Webhooks))
	}
	w := c.Webhooks[0]
	svc := w.ClientConfig.Service
	if w.Name != "inject.kratos-injector.io" || svc == nil || svc.Name != "kratos-injector" || svc.Namespace != ns ||
		svc.Path == nil || *svc.Path != "/mutate" || svc.Port == nil || *svc.Port != 443 || w.ClientConfig.URL != nil || len(w.ClientConfig.CABundle) != 0 {
		t.Errorf("webhook %s clientConfig %+v", w.Name, w.ClientConfig)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].APIGroups, []string{""}) {
		t.Errorf("rules %+v: want pods CREATE", w.Rules)
	}
	if w.ObjectSelector == nil || len(w.ObjectSelector.MatchLabels) != 1 || w.ObjectSelector.MatchLabels["kratos-injector.io/inject"] != "true" {
		t.Errorf("objectSelector %+v", w.ObjectSelector)
	}
	if w.NamespaceSelector == nil || len(w.NamespaceSelector.MatchExpressions) != 1 {
		t.Fatalf("namespaceSelector %+v", w.NamespaceSelector)
	}
	e := w.NamespaceSelector.MatchExpressions[0]
	if e.Key != "kubernetes.io/metadata.name" || e.Operator != "NotIn" || !slices.Equal(sortedCopy(e.Values), []string{"kratos-injector", "kube-public", "kube-system"}) {
		t.Errorf("namespaceSelector %+v", e)
	}
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail || w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		w.TimeoutSeconds == nil || *w.TimeoutSeconds != 5 || w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy ||
		!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("webhook policies: failurePolicy %v sideEffects %v timeout %v reinvocation %v versions %v",
			deref(w.FailurePolicy), deref(w.SideEffects), deref(w.TimeoutSeconds), deref(w.ReinvocationPolicy), w.AdmissionReviewVersions)
	}
}

// TestCertManager: Issuer → CA Certificate → CA Issuer → serving Certificate, whose Secret is
// mounted at /tls, and whose CA cainjector injects into the webhook configuration.
func TestCertManager(t *testing.T) {
	r := load(t, "cert-manager")
	if got := grants(t, r); !slices.Equal(got, []string{"ns /pods get *"}) {
		t.Errorf("cert-manager grants %v: want only reading its own pods (its image)", got)
	}
	if len(r.vaps)+len(r.vapbs) != 0 {
		t.Error("the cert-manager overlay ships an admission policy: the webhook has no API rights to narrow")
	}
	self, ok := r.issuers["kratos-injector-selfsigned"]
	if !ok || self.Spec.SelfSigned == nil {
		t.Fatalf("no self-signed Issuer: %v", r.issuers)
	}
	ca, ok := r.certs["kratos-injector-ca"]
	if !ok || !ca.Spec.IsCA || ca.Spec.IssuerRef.Name != self.Name || ca.Spec.IssuerRef.Kind != "Issuer" {
		t.Fatalf("CA Certificate %+v", ca)
	}
	caIssuer, ok := r.issuers["kratos-injector-ca"]
	if !ok || caIssuer.Spec.CA == nil || caIssuer.Spec.CA.SecretName != ca.Spec.SecretName {
		t.Fatalf("CA Issuer %+v: want spec.ca.secretName %s", caIssuer, ca.Spec.SecretName)
	}
	serving, ok := r.certs["kratos-injector-serving"]
	if !ok || serving.Spec.IsCA || serving.Spec.IssuerRef.Name != caIssuer.Name || serving.Spec.IssuerRef.Kind != "Issuer" {
		t.Fatalf("serving Certificate %+v", serving)
	}
	if want := []string{"kratos-injector.kratos-injector.svc", "kratos-injector.kratos-injector.svc.cluster.local"}; !slices.Equal(serving.Spec.DNSNames, want) {
		t.Errorf("dnsNames %v, want %v", serving.Spec.DNSNames, want)
	}
	if !slices.Contains(serving.Spec.Usages, cmv1.UsageServerAuth) {
		t.Errorf("usages %v lack server auth", serving.Spec.Usages)
	}
	for _, c := range []*cmv1.Certificate{ca, serving} {
		if c.Spec.PrivateKey == nil || c.Spec.PrivateKey.Algorithm != cmv1.ECDSAKeyAlgorithm || c.Spec.PrivateKey.Size != 256 {
			t.Errorf("%s private key %+v: want ECDSA P-256", c.Name, c.Spec.PrivateKey)
		}
	}
	if got, want := r.mwc.Annotations["cert-manager.io/inject-ca-from"], ns+"/"+serving.Name; got != want {
		t.Errorf("inject-ca-from %q, want %q", got, want)
	}
	vol := mountedAt(t, r.deploy, "/tls")
	if vol.Secret == nil || vol.Secret.SecretName != serving.Spec.SecretName {
		t.Errorf("/tls is %+v, want the serving Secret %s", vol.VolumeSource, serving.Spec.SecretName)
	}
	if slices.ContainsFunc(r.deploy.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--tls-mode") }) {
		t.Error("the cert-manager overlay sets --tls-mode: files (the default) reads /tls")
	}
}

// TestSelfSigned: --tls-mode=self-signed with RBAC on exactly the objects its flags name.
func TestSelfSigned(t *testing.T) {
	r := load(t, "self-signed")
	c := r.deploy.Spec.Template.Spec.Containers[0]
	flags := map[string]string{}
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok {
			flags[k] = v
		}
	}
	if flags["--tls-mode"] != "self-signed" {
		t.Fatalf("args %q: want --tls-mode=self-signed", c.Args)
	}
	secret, config, service := flags["--tls-secret-name"], flags["--webhook-config-name"], flags["--service-name"]
	if secret == "" || config != r.mwc.Name || service != r.svc.Name {
		t.Errorf("--tls-secret-name %q --webhook-config-name %q --service-name %q: want the Secret and the rendered %s, %s", secret, config, service, r.mwc.Name, r.svc.Name)
	}
	if _, set := flags["--tls-secret-namespace"]; set {
		t.Error("--tls-secret-namespace set: the pod's namespace (POD_NAMESPACE) is the one RBAC covers")
	}
	if vol := mountedAt(t, r.deploy, "/tls"); vol.EmptyDir == nil || vol.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("/tls is %+v, want an in-memory emptyDir", vol.VolumeSource)
	}
	if a := r.deploy.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || !*a {
		t.Error("the self-signed overlay needs the ServiceAccount token")
	}
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: r.deploy.Spec.Template.Spec.ServiceAccountName, Namespace: ns}
	grants := grants(t, r)
	want := []string{
		"cluster admissionregistration.k8s.io/mutatingwebhookconfigurations get " + config,
		"cluster admissionregistration.k8s.io/mutatingwebhookconfigurations patch " + config,
		"ns /pods get *",
		"ns /secrets create *",
		"ns /secrets get " + secret,
		"ns /secrets update " + secret,
	}
	if !slices.Equal(grants, want) {
		t.Errorf("grants:\n  %s\nwant exactly:\n  %s", strings.Join(grants, "\n  "), strings.Join(want, "\n  "))
	}
	if len(r.roles) != len(r.rbs) || len(r.croles) != len(r.crbs) {
		t.Errorf("unbound roles: %d Roles/%d RoleBindings, %d ClusterRoles/%d ClusterRoleBindings", len(r.roles), len(r.rbs), len(r.croles), len(r.crbs))
	}
	for _, rl := range r.roles {
		if rl.Namespace != ns {
			t.Errorf("Role %s in %q", rl.Name, rl.Namespace)
		}
	}
	checkCABundlePolicy(t, r, sa, config)
}

// checkCABundlePolicy: the ValidatingAdmissionPolicy that narrows the ServiceAccount's patch of
// its webhook configuration to the caBundle (RBAC cannot) is bound with Deny, fails closed,
// matches that ServiceAccount's requests on webhook configurations and names the configuration
// the flags name. What it lets through is tested on a real API server in internal/selfsigned
// (TestCABundlePolicy).
func checkCABundlePolicy(t *testing.T, r *rendered, sa rbacv1.Subject, config string) {
	t.Helper()
	if len(r.vaps) != 1 || len(r.vapbs) != 1 {
		t.Fatalf("%d ValidatingAdmissionPolicies, %d bindings: want the caBundle policy and its binding", len(r.vaps), len(r.vapbs))
	}
	p, b := r.vaps[0], r.vapbs[0]
	if b.Spec.PolicyName != p.Name || !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) ||
		b.Spec.ParamRef != nil || b.Spec.MatchResources != nil {
		t.Errorf("binding %s %+v: want policy %s, Deny, on everything the policy matches", b.Name, b.Spec, p.Name)
	}
	if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Fail || p.Spec.ParamKind != nil {
		t.Errorf("policy %s: failurePolicy %v, paramKind %v: want Fail, no params", p.Name, deref(p.Spec.FailurePolicy), p.Spec.ParamKind)
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", sa.Namespace, sa.Name)
	if mc := p.Spec.MatchConditions; len(mc) != 1 || mc[0].Expression != fmt.Sprintf("request.userInfo.username == '%s'", user) {
		t.Errorf("policy %s matchConditions %+v: want the ServiceAccount %s alone", p.Name, mc, user)
	}
	var ops []string
	if mc := p.Spec.MatchConstraints; mc != nil {
		for _, rule := range mc.ResourceRules {
			if slices.Contains(rule.APIGroups, admissionregistrationv1.GroupName) && slices.Contains(rule.Resources, "mutatingwebhookconfigurations") {
				for _, op := range rule.Operations {
					ops = append(ops, string(op))
				}
			}
		}
	}
	slices.Sort(ops)
	if !slices.Equal(ops, []string{"CREATE", "DELETE", "UPDATE"}) {
		t.Errorf("policy %s matches %v on mutatingwebhookconfigurations, want CREATE, DELETE, UPDATE", p.Name, ops)
	}
	i := slices.IndexFunc(p.Spec.Variables, func(v admissionregistrationv1.Variable) bool { return v.Name == "own" })
	if i < 0 || !strings.Contains(p.Spec.Variables[i].Expression, fmt.Sprintf("request.name == '%s'", config)) {
		t.Errorf("policy %s: its variable `own` does not name the configuration %s", p.Name, config)
	}
}

// TestImageOverride: a user's overlay that changes the image with `images:` alone (what
// `kustomize edit set image` writes) changes the webhook's image and pins no other: the injected
// kratos-config image follows it because the webhook reads its own pod (internal/selfimage's
// TestOwnImageAfterOverride runs that against an API server).
func TestImageOverride(t *testing.T) {
	for _, overlay := range []string{"self-signed", "cert-manager"} {
		dir := t.TempDir()
		abs, err := filepath.Abs(overlay)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(dir, abs) // kustomize refuses absolute resource paths
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf(`resources:
- %s
images:
- name: ghcr.io/kratos-injector/kratos-injector
  newName: registry.example/mirror/kratos-injector
  newTag: v9.9.9
`, rel)
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
		r := load(t, dir)
		c := r.deploy.Spec.Template.Spec.Containers[0]
		if c.Image != "registry.example/mirror/kratos-injector:v9.9.9" {
			t.Errorf("%s: image %q", overlay, c.Image)
		}
		if bytes.Contains(render(t, dir), []byte("ghcr.io/kratos-injector/kratos-injector")) {
			t.Errorf("%s: the old image is still named somewhere after the override", overlay)
		}
	}
}

// The Dockerfile and the image `make image` builds (and the bed runs) are kept in step by
// internal/ociimage's TestDockerfileMatches.

// grants flattens every grant bound to the webhook's ServiceAccount ("ns|cluster group/resource
// verb name", name * for any), sorted; a binding to anyone else, or to an unrendered role, fails.
func grants(t *testing.T, r *rendered) []string {
	t.Helper()
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: r.deploy.Spec.Template.Spec.ServiceAccountName, Namespace: ns}

	var grants []string
	bound := func(kind, name string, subjects []rbacv1.Subject) {
		if !slices.Equal(subjects, []rbacv1.Subject{sa}) {
			t.Errorf("%s %s binds %+v, want only %+v", kind, name, subjects, sa)
		}
	}
	for _, rb := range r.rbs {
		bound("RoleBinding", rb.Name, rb.Subjects)
		i := slices.IndexFunc(r.roles, func(x *rbacv1.Role) bool { return x.Name == rb.RoleRef.Name && rb.RoleRef.Kind == "Role" })
		if i < 0 {
			t.Fatalf("RoleBinding %s refers to %s %s, not rendered", rb.Name, rb.RoleRef.Kind, rb.RoleRef.Name)
		}
		grants = append(grants, flatten("ns", r.roles[i].Rules)...)
	}
	for _, crb := range r.crbs {
		bound("ClusterRoleBinding", crb.Name, crb.Subjects)
		i := slices.IndexFunc(r.croles, func(x *rbacv1.ClusterRole) bool {
			return x.Name == crb.RoleRef.Name && crb.RoleRef.Kind == "ClusterRole"
		})
		if i < 0 {
			t.Fatalf("ClusterRoleBinding %s refers to %s %s, not rendered", crb.Name, crb.RoleRef.Kind, crb.RoleRef.Name)
		}
		grants = append(grants, flatten("cluster", r.croles[i].Rules)...)
	}
	slices.Sort(grants)
	return grants
}

func flatten(scope string, rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{"*"}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, fmt.Sprintf("%s %s/%s %s %s", scope, g, res, v, n))
					}
				}
			}
		}
	}
	return out
}

func mountedAt(t *testing.T, d *appsv1.Deployment, path string) corev1.Volume {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
	if i < 0 {
		t.Fatalf("nothing mounted at %s", path)
	}
	j := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if j < 0 {
		t.Fatalf("volume %s not defined", c.VolumeMounts[i].Name)
	}
	return d.Spec.Template.Spec.Volumes[j]
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
