package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The examples are checked against the real API server: built-in kinds against its own schemas,
// the Gateway API kinds against the release's CRDs (v1.6.3, standard channel, with their CEL
// rules), decoded as unstructured objects rather than through the gateway-api Go module, which
// would pull its k8s.io versions into this module's graph. Server-side apply with
// fieldValidation=Strict rejects unknown and duplicate fields and values the schema refuses.

const (
	ns           = "shop" // the files carry no namespace: they go next to the workload
	fieldManager = "kratos-injector-examples"
)

var (
	services    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	ingresses   = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}
	gateways    = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	httpRoutes  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	crds        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gatewayCRDs = []string{"gatewayclasses", "gateways", "httproutes", "referencegrants"}
)

// examples are the files and what each must be.
var examples = []struct {
	file string
	gvr  schema.GroupVersionResource
	kind string
}{
	{"service.yaml", services, "Service"},
	{"ingress-nginx.yaml", ingresses, "Ingress"},
	{"ingress-traefik.yaml", ingresses, "Ingress"},
	{"ingress-nginx-prefix.yaml", ingresses, "Ingress"},
	{"gateway.yaml", gateways, "Gateway"},
	{"httproute.yaml", httpRoutes, "HTTPRoute"},
	{"httproute-prefix.yaml", httpRoutes, "HTTPRoute"},
}

var (
	bedOnce sync.Once
	bed     *testbed.Bed
	dyn     dynamic.Interface
	cs      kubernetes.Interface
	bedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bed != nil {
		bed.Close()
	}
	os.Exit(code)
}

// cluster starts etcd + kube-apiserver once and installs the Gateway API CRDs and the namespace
// (dyn is then set); it returns a typed client once the CRDs are Established.
func cluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	bedOnce.Do(func() { bedErr = start() })
	if bedErr != nil {
		t.Fatalf("test bed: %v", bedErr)
	}
	return cs
}

func start() error {
	var err error
	if bed, err = testbed.New(""); err != nil {
		return err
	}
	cp, err := bed.StartControlPlane(testbed.ControlPlaneOptions{})
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	if dyn, err = dynamic.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	cs = cp.Client
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, plural := range gatewayCRDs {
		y, err := testbed.GatewayAPICRD(plural)
		if err != nil {
			return err
		}
		crd, err := testbed.SingleObject(y)
		if err != nil {
			return fmt.Errorf("CRD %s: %w", plural, err)
		}
		if err := apply(ctx, crds, crd); err != nil {
			return fmt.Errorf("install CRD %s: %w", plural, err)
		}
		if err := testbed.WaitCRDEstablished(ctx, dyn, crd.GetName()); err != nil {
			return err
		}
	}
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if err := apply(ctx, namespaces, nsObj); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return nil
}

// apply is `kubectl apply --server-side --force-conflicts --validate=strict`.
func apply(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	return testbed.ApplyStrict(ctx, dyn, gvr, u, fieldManager)
}

// load reads an example strictly (a key given twice is an error) and puts it in the namespace.
func load(t *testing.T, file string) *unstructured.Unstructured {
	t.Helper()
	y, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := yaml.YAMLToJSONStrict(y); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	u, err := testbed.SingleObject(y)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if u.GetNamespace() != "" {
		t.Fatalf("%s: namespace %q; the examples carry none (kubectl apply -n puts them next to the workload)", file, u.GetNamespace())
	}
	u.SetNamespace(ns)
	return u
}

// loadInto decodes an example strictly into its Go type.
func loadInto(t *testing.T, file string, into any) {
	t.Helper()
	y, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(y, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestApply applies each example server-side with strict validation, reads it back and checks
// that the API server kept every field of the file (none pruned as unknown).
func TestApply(t *testing.T) {
	cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			u := load(t, ex.file)
			if u.GetKind() != ex.kind || u.GroupVersionKind().GroupVersion() != ex.gvr.GroupVersion() {
				t.Fatalf("%s is a %s, want %s %s", ex.file, u.GroupVersionKind(), ex.gvr.GroupVersion(), ex.kind)
			}
			if err := apply(ctx, ex.gvr, u); err != nil {
				t.Fatal(err)
			}
			got, err := dyn.Resource(ex.gvr).Namespace(ns).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if err := testbed.Subset(u.Object, got.Object); err != nil {
				t.Errorf("stored object differs from %s: %v", ex.file, err)
			}
		})
	}
}

// TestRejectsWrongField proves the check has teeth: a misspelt field, a value outside an enum and
// what the Gateway API's CEL rules forbid are each rejected by the API server.
func TestRejectsWrongField(t *testing.T) {
	cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		name   string
		file   string
		gvr    schema.GroupVersionResource
		reason string // what the error must name
		breaks func(u *unstructured.Unstructured)
	}{
		{"Ingress: misspelt backend field", "ingress-nginx.yaml", ingresses, "servce", func(u *unstructured.Unstructured) {
			p := path0(u)
			b := p["backend"].(map[string]any)
			b["servce"] = b["service"]
			delete(b, "service")
			setPath0(u, p)
		}},
		{"Ingress: pathType outside the enum", "ingress-nginx.yaml", ingresses, "pathType", func(u *unstructured.Unstructured) {
			p := path0(u)
			p["pathType"] = "Regex"
			setPath0(u, p)
		}},
		{"HTTPRoute: ReplacePrefixMatch on an Exact match (CEL)", "httproute-prefix.yaml", httpRoutes, "replacePrefixMatch, exactly one PathPrefix match", func(u *unstructured.Unstructured) {
			rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
			m := rules[0].(map[string]any)["matches"].([]any)[0].(map[string]any)["path"].(map[string]any)
			m["type"] = "Exact"
			_ = unstructured.SetNestedSlice(u.Object, rules, "spec", "rules")
		}},
		{"HTTPRoute: Service backendRef without a port (CEL)", "httproute.yaml", httpRoutes, "Must have port for Service reference", func(u *unstructured.Unstructured) {
			rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
			delete(rules[0].(map[string]any)["backendRefs"].([]any)[0].(map[string]any), "port")
			_ = unstructured.SetNestedSlice(u.Object, rules, "spec", "rules")
		}},
		{"Gateway: misspelt listener field", "gateway.yaml", gateways, "hostnames", func(u *unstructured.Unstructured) {
			ls, _, _ := unstructured.NestedSlice(u.Object, "spec", "listeners")
			l := ls[0].(map[string]any)
			l["hostnames"] = []any{l["hostname"]}
			delete(l, "hostname")
			_ = unstructured.SetNestedSlice(u.Object, ls, "spec", "listeners")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := load(t, c.file)
			u.SetName(u.GetName() + "-broken")
			c.breaks(u)
			err := apply(ctx, c.gvr, u)
			if err == nil {
				t.Fatalf("the API server accepted the broken %s", c.file)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("want an error naming %q, got %v", c.reason, err)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

func path0(u *unstructured.Unstructured) map[string]any {
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	return rules[0].(map[string]any)["http"].(map[string]any)["paths"].([]any)[0].(map[string]any)
}

func setPath0(u *unstructured.Unstructured, p map[string]any) {
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	rules[0].(map[string]any)["http"].(map[string]any)["paths"].([]any)[0] = p
	_ = unstructured.SetNestedSlice(u.Object, rules, "spec", "rules")
}

// TestAgree checks that the files fit together: the Service selects the example Deployment's
// pods on the port the injector names kratos-public (never the admin port), every Ingress and
// HTTPRoute sends its host to that Service and port, the routes attach to the Gateway's HTTPS
// listener, and the root and prefix variants agree across Ingress and HTTPRoute.
func TestAgree(t *testing.T) {
	var svc corev1.Service
	loadInto(t, "service.yaml", &svc)
	var deploy appsv1.Deployment
	loadInto(t, "../deployment.yaml", &deploy)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the example Deployment's pods %v", svc.Spec.Selector, deploy.Spec.Template.Labels)
	}
	if deploy.Spec.Template.Labels[inject.LabelInject] != "true" || svc.Spec.Selector[inject.LabelInject] != "true" {
		t.Errorf("the Service must select injected pods only (%s: \"true\")", inject.LabelInject)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports %+v: want exactly one, the public API", svc.Spec.Ports)
	}
	sp := svc.Spec.Ports[0]
	if sp.Name != inject.PortNamePublic || sp.TargetPort.String() != inject.PortNamePublic || sp.Port != config.PublicPort {
		t.Errorf("Service port %+v: want %s, %d -> the container port named %s", sp, inject.PortNamePublic, config.PublicPort, inject.PortNamePublic)
	}

	// The Ingresses: host, TLS, the Service's public port only.
	hostOf := map[string]string{}
	for _, f := range []string{"ingress-nginx.yaml", "ingress-traefik.yaml", "ingress-nginx-prefix.yaml"} {
		ing, err := testbed.LoadIngress(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].HTTP == nil || len(ing.Spec.Rules[0].HTTP.Paths) != 1 {
			t.Fatalf("%s: want one rule with one path", f)
		}
		r := ing.Spec.Rules[0]
		hostOf[f] = r.Host
		if len(ing.Spec.TLS) != 1 || !reflect.DeepEqual(ing.Spec.TLS[0].Hosts, []string{r.Host}) || ing.Spec.TLS[0].SecretName == "" {
			t.Errorf("%s: TLS %+v, want the host %s with a Secret", f, ing.Spec.TLS, r.Host)
		}
		be := r.HTTP.Paths[0].Backend.Service
		if be == nil || be.Name != svc.Name || be.Port.Name != sp.Name {
			t.Errorf("%s: backend %+v, want the Service %s port %s", f, r.HTTP.Paths[0].Backend, svc.Name, sp.Name)
		}
		// The routing itself is checked through the edge (TestThroughEdge); the edge refuses
		// what it does not implement, so every Ingress must be one it can serve.
		if err := testbed.CheckEdgeIngress(ing); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if hostOf["ingress-nginx.yaml"] != hostOf["ingress-traefik.yaml"] {
		t.Errorf("the nginx and traefik Ingresses differ in host: %v", hostOf)
	}

	// The Gateway and HTTPRoutes.
	gw := load(t, "gateway.yaml")
	listeners, _, _ := unstructured.NestedSlice(gw.Object, "spec", "listeners")
	if len(listeners) != 1 {
		t.Fatalf("gateway.yaml: want one listener")
	}
	l := listeners[0].(map[string]any)
	if l["protocol"] != "HTTPS" || l["port"] != float64(443) {
		t.Errorf("gateway.yaml: listener %v, want HTTPS on 443", l)
	}
	wildcard, _ := l["hostname"].(string)
	for route, ing := range map[string]string{"httproute.yaml": "ingress-nginx.yaml", "httproute-prefix.yaml": "ingress-nginx-prefix.yaml"} {
		u := load(t, route)
		parents, _, _ := unstructured.NestedSlice(u.Object, "spec", "parentRefs")
		if len(parents) != 1 || parents[0].(map[string]any)["name"] != gw.GetName() || parents[0].(map[string]any)["sectionName"] != l["name"] {
			t.Errorf("%s: parentRefs %v, want the Gateway %s listener %v", route, parents, gw.GetName(), l["name"])
		}
		hosts, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "hostnames")
		if !reflect.DeepEqual(hosts, []string{hostOf[ing]}) {
			t.Errorf("%s: hostnames %v, want [%s] as %s", route, hosts, hostOf[ing], ing)
		}
		if !strings.HasPrefix(wildcard, "*.") || !strings.HasSuffix(hostOf[ing], wildcard[1:]) {
			t.Errorf("%s: host %s is not covered by the Gateway listener's %q", route, hostOf[ing], wildcard)
		}
		rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
		if len(rules) != 1 {
			t.Fatalf("%s: want one rule", route)
		}
		refs := rules[0].(map[string]any)["backendRefs"].([]any)
		if len(refs) != 1 || refs[0].(map[string]any)["name"] != svc.Name || refs[0].(map[string]any)["port"] != float64(sp.Port) {
			t.Errorf("%s: backendRefs %v, want the Service %s port %d", route, refs, svc.Name, sp.Port)
		}
	}
	// The prefix variants: the same prefix, stripped to /.
	prefix, _, _ := unstructured.NestedSlice(load(t, "httproute-prefix.yaml").Object, "spec", "rules")
	rule := prefix[0].(map[string]any)
	match := rule["matches"].([]any)[0].(map[string]any)["path"].(map[string]any)
	filters := rule["filters"].([]any)
	rewrite, _, _ := unstructured.NestedMap(filters[0].(map[string]any), "urlRewrite", "path")
	if match["type"] != "PathPrefix" || match["value"] != "/auth" || len(filters) != 1 ||
		!reflect.DeepEqual(rewrite, map[string]any{"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}) {
		t.Errorf("httproute-prefix.yaml: match %v filters %v, want PathPrefix /auth rewritten to /", match, filters)
	}
	ing, _ := testbed.LoadIngress("ingress-nginx-prefix.yaml")
	if p := ing.Spec.Rules[0].HTTP.Paths[0].Path; !strings.HasPrefix(p, "/auth(") {
		t.Errorf("ingress-nginx-prefix.yaml: path %q, want the prefix /auth as httproute-prefix.yaml", p)
	}

	// Nothing routes to the admin API (the comments may say so).
	for _, ex := range examples {
		b, err := yaml.YAMLToJSON(must(os.ReadFile(ex.file)))
		if err != nil {
			t.Fatal(err)
		}
		for _, admin := range []string{strconv.Itoa(config.AdminPort), inject.PortNameAdmin} {
			if strings.Contains(string(b), admin) {
				t.Errorf("%s mentions %s: the examples expose the public API only", ex.file, admin)
			}
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// bed0 is a bed of its own, without a control plane, for an edge.
func bed0(t *testing.T) *testbed.Bed {
	t.Helper()
	b, err := testbed.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestThroughEdge sends requests through each shipped Ingress, served by the bed's edge, to a
// local upstream standing in for the pods. The backends are found as ingress-nginx finds them:
// the ready endpoints of the Service's EndpointSlices, on the endpoint port named like the Service
// port. The API server refuses loopback endpoint addresses and this test has no pod network, so
// the slice holds a pod address on the bed's bridge range and the upstream on 127.0.0.1 plays
// that pod (same port); the e2e tests run the same path against real pods.
func TestThroughEdge(t *testing.T) {
	cs := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := apply(ctx, services, load(t, "service.yaml")); err != nil {
		t.Fatal(err)
	}
	var got struct {
		sync.Mutex
		uri, host, proto string
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Lock()
		got.uri, got.host, got.proto = r.URL.RequestURI(), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto")
		got.Unlock()
		_, _ = io.WriteString(w, "kratos public")
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	upPort := int32(l.Addr().(*net.TCPAddr).Port)

	var svc corev1.Service
	loadInto(t, "service.yaml", &svc)
	const podIP = "10.89.0.7"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-local", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "kratos-injector-examples"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{podIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			// Not ready: ingress-nginx leaves it out, and so must the edge's backends.
			{Addresses: []string{"10.89.0.8"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(inject.PortNamePublic), Port: ptr.To(upPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ca, err := testbed.NewCA("examples-ingress-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		path string // requested
		want string // what Kratos must see
	}{
		{"ingress-nginx.yaml", "/self-service/login/browser?return_to=https://app.example.com/", "/self-service/login/browser?return_to=https://app.example.com/"},
		{"ingress-traefik.yaml", "/sessions/whoami", "/sessions/whoami"},
		{"ingress-nginx-prefix.yaml", "/auth/self-service/login/browser?return_to=https://app.example.com/", "/self-service/login/browser?return_to=https://app.example.com/"},
		{"ingress-nginx-prefix.yaml", "/auth/", "/"},
	} {
		t.Run(tc.file+tc.path, func(t *testing.T) {
			ing, err := testbed.LoadIngress(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			ing.Namespace = ns
			backends, err := testbed.EdgeBackends(ctx, cs, ing)
			if err != nil {
				t.Fatal(err)
			}
			port := strconv.Itoa(int(upPort))
			if want := []string{net.JoinHostPort(podIP, port)}; !reflect.DeepEqual(backends, want) {
				t.Fatalf("EdgeBackends = %v, want %v (the ready endpoint on the kratos-public port)", backends, want)
			}
			backends = []string{net.JoinHostPort("127.0.0.1", port)} // the upstream plays the pod
			e, err := bed0(t).StartEdge(ing, backends, ca)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("edge config:\n%s\nedge log:\n%s", e.Config(), e.Logs(40))
				}
			}()
			host := ing.Spec.Rules[0].Host
			resp, err := e.Client().Get("https://" + host + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got.Lock()
			defer got.Unlock()
			if resp.StatusCode != http.StatusOK || string(body) != "kratos public" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if got.uri != tc.want || got.host != host || got.proto != "https" {
				t.Errorf("upstream saw %s (X-Forwarded-Host %q, X-Forwarded-Proto %q), want %s from %s over https", got.uri, got.host, got.proto, tc.want, host)
			}
		})
	}
}

// TestKratosBehindEdge puts a real Kratos (v1.3.1, SQLite) behind the edge, configured from the
// shipped Ingress files, with public-url under the prefix: Kratos's URLs carry the prefix it does
// not see, and its admin routes are not served through the public port (a redirect to the admin
// API's own loopback address, which the edge does not follow).
func TestKratosBehindEdge(t *testing.T) {
	const publicURL = "https://shop.example.com/auth/"
	b := bed0(t)
	dir := t.TempDir()
	schema := `{"$id": "https://example.com/person.schema.json", "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object", "properties": {"traits": {"type": "object", "properties": {"email": {"type": "string", "format": "email",
  "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}}}, "required": ["email"]}}}`
	if err := os.WriteFile(dir+"/identity.schema.json", []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`dsn: "sqlite://%s/kratos.sqlite?_fk=true&mode=rwc"
serve:
  public: {base_url: %q}
identity:
  default_schema_id: default
  schemas: [{id: default, url: "file://%s/identity.schema.json"}]
selfservice:
  default_browser_return_url: https://shop.example.com/
  methods:
    password: {enabled: true, config: {haveibeenpwned_enabled: false}}
secrets:
  default: [ingress-example-default-secret-0123]
  cookie: [ingress-example-cookie-secret-01234]
  cipher: [32-LONG-SECRET-NOT-SECURE-AT-ALL]
`, dir, publicURL, dir)
	if err := os.WriteFile(dir+"/kratos.yaml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, err := b.StartKratos(ctx, testbed.KratosOptions{Name: "kratos-behind-edge", ConfigFile: dir + "/kratos.yaml", Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	backend := strings.TrimPrefix(k.PublicURL, "http://")
	ca, err := testbed.NewCA("examples-ingress-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, prefix string }{
		{"ingress-nginx-prefix.yaml", "/auth"},
		{"ingress-nginx.yaml", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ing, err := testbed.LoadIngress(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			e, err := b.StartEdge(ing, []string{backend}, ca)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("edge log:\n%s\nKratos log:\n%s", e.Logs(40), k.Proc.Tail(40))
				}
				e.Stop()
			}()
			c := e.Client()
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			base := "https://" + ing.Spec.Rules[0].Host + tc.prefix

			resp, err := c.Get(base + "/health/ready")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s/health/ready: %s", base, resp.Status)
			}

			if tc.prefix != "" {
				// A flow's form action is built from public-url: the prefix Kratos never saw.
				resp, err := c.Get(base + "/self-service/registration/api")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var flow struct {
					UI struct {
						Action string `json:"action"`
					} `json:"ui"`
				}
				if err := json.Unmarshal(body, &flow); err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("registration flow: %s %s (%v)", resp.Status, body, err)
				}
				if want := publicURL + "self-service/registration?flow="; !strings.HasPrefix(flow.UI.Action, want) {
					t.Errorf("flow action %q, want it under %s", flow.UI.Action, want)
				}
			}

			// The admin routes through the edge: Kratos's public port redirects to the admin
			// API's base URL, on the pod's (here Kratos's) loopback; nothing is served.
			for _, p := range []string{"/admin/identities", "/identities"} {
				resp, err := c.Get(base + p)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				loc, _ := resp.Location()
				if resp.StatusCode != http.StatusTemporaryRedirect || loc == nil || !net.ParseIP(loc.Hostname()).IsLoopback() {
					t.Errorf("%s%s: %s, Location %v; want 307 to the admin API's loopback address", base, p, resp.Status, loc)
				}
				if strings.Contains(string(body), "traits") {
					t.Errorf("%s%s served identities: %s", base, p, body)
				}
				t.Logf("%s%s: %s -> %v", base, p, resp.Status, loc)
			}
		})
	}
}
