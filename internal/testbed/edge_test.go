package testbed_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The edge's own tests: Debian's nginx, started by the bed from an Ingress, in front of plain Go
// HTTP upstreams on 127.0.0.1 that record what reaches them. The examples' tests
// (examples/ingress) run the shipped Ingress files through the same edge.

// upstream is a local HTTP server that records each request it gets and answers with its name.
type upstream struct {
	name string
	addr string
	srv  *http.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{name: name, addr: l.Addr().String()}
	u.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		w.Header().Set("X-Upstream", name)
		fmt.Fprintf(w, "%s %s", name, r.URL.RequestURI())
	})}
	go func() { _ = u.srv.Serve(l) }()
	t.Cleanup(func() { _ = u.srv.Close() })
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatalf("upstream %s got no request", u.name)
	}
	return u.reqs[len(u.reqs)-1]
}

var edgeBed struct {
	once sync.Once
	bed  *testbed.Bed
	ca   *testbed.CA
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if edgeBed.bed != nil {
		edgeBed.bed.Close()
	}
	os.Exit(code)
}

func bedAndCA(t *testing.T) (*testbed.Bed, *testbed.CA) {
	t.Helper()
	edgeBed.once.Do(func() {
		if edgeBed.bed, edgeBed.err = testbed.New(""); edgeBed.err != nil {
			return
		}
		edgeBed.ca, edgeBed.err = testbed.NewCA("edge-test-ca")
	})
	if edgeBed.err != nil {
		t.Fatal(edgeBed.err)
	}
	return edgeBed.bed, edgeBed.ca
}

// startEdge starts an edge and prints its config and log when the test fails.
func startEdge(t *testing.T, ing *networkingv1.Ingress, backends ...string) *testbed.Edge {
	t.Helper()
	bed, ca := bedAndCA(t)
	e, err := bed.StartEdge(ing, backends, ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edge config:\n%s\nedge log:\n%s", e.Config(), e.Logs(60))
		}
		e.Stop()
	})
	return e
}

type pathSpec struct {
	path string
	typ  networkingv1.PathType
}

// ingress builds an Ingress of one host routing paths to the Service kratos:kratos-public.
func ingress(class, host string, annotations map[string]string, paths ...pathSpec) *networkingv1.Ingress {
	var hp []networkingv1.HTTPIngressPath
	for _, p := range paths {
		hp = append(hp, networkingv1.HTTPIngressPath{Path: p.path, PathType: ptr.To(p.typ),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: "kratos", Port: networkingv1.ServiceBackendPort{Name: "kratos-public"}}}})
	}
	return &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{Name: "kratos", Namespace: "shop", Annotations: annotations},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To(class),
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "tls"}},
			Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: hp}}}},
		},
	}
}

// get sends a GET through the edge's client and returns status, body and the upstream's name.
func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("X-Upstream")
}

// TestEdgeRoutesHostOverTLS: the Ingress's host reaches the upstream over TLS verified against
// the bed's CA for that name, with the forwarded headers ingress-nginx sets; other names and
// Host headers reach nothing.
func TestEdgeRoutesHostOverTLS(t *testing.T) {
	up := newUpstream(t, "a")
	const host = "auth.example.com"
	e := startEdge(t, ingress("nginx", host, nil, pathSpec{"/", networkingv1.PathTypePrefix}), up.addr)
	if !strings.HasPrefix(e.Addr, "127.0.0.1:") {
		t.Fatalf("edge listens on %s, want 127.0.0.1", e.Addr)
	}
	_, port, _ := net.SplitHostPort(e.Addr)
	c := e.Client()

	t.Run("host routed, headers forwarded", func(t *testing.T) {
		// A client's own X-Forwarded-* are not trusted: replaced, not passed on.
		code, body, from := get(t, c, "https://"+host+"/self-service/login/browser?return_to=x",
			"X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "http", "X-Forwarded-Host", "evil.example")
		if code != http.StatusOK || from != "a" || body != "a /self-service/login/browser?return_to=x" {
			t.Fatalf("got %d from %q: %q", code, from, body)
		}
		r := up.last(t)
		for h, want := range map[string]string{
			"Host": host, "X-Forwarded-Host": host, "X-Forwarded-Proto": "https",
			"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Port": port,
		} {
			got := r.Header.Get(h)
			if h == "Host" {
				got = r.Host
			}
			if got != want {
				t.Errorf("upstream saw %s %q, want %q", h, got, want)
			}
		}
		if got := r.Header.Values("X-Forwarded-For"); len(got) != 1 {
			t.Errorf("upstream saw X-Forwarded-For %q, want one value", got)
		}
	})

	t.Run("Host header with a port is forwarded as sent", func(t *testing.T) {
		// The URL's port is ignored by the client's dialer; the Host header carries it.
		hostPort := host + ":" + port
		if code, _, _ := get(t, c, "https://"+hostPort+"/x"); code != http.StatusOK {
			t.Fatalf("got %d", code)
		}
		r := up.last(t)
		if r.Host != hostPort || r.Header.Get("X-Forwarded-Host") != hostPort {
			t.Errorf("upstream saw Host %q, X-Forwarded-Host %q; want %q", r.Host, r.Header.Get("X-Forwarded-Host"), hostPort)
		}
	})

	t.Run("certificate is the bed CA's, for the host", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(e.CAPEM)
		conn, err := tls.Dial("tcp", e.Addr, &tls.Config{ServerName: host, RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS to %s as %s: %v", e.Addr, host, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if err := leaf.VerifyHostname(host); err != nil {
			t.Error(err)
		}
		// Without the bed's CA the same handshake fails: the client above verified for real.
		if conn, err := tls.Dial("tcp", e.Addr, &tls.Config{ServerName: host, RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}); err == nil {
			conn.Close()
			t.Error("handshake verified against an empty root pool")
		}
	})

	t.Run("unknown TLS name is refused", func(t *testing.T) {
		before := up.count()
		for _, sni := range []string{"other.example.com", ""} {
			conn, err := tls.Dial("tcp", e.Addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true}) //nolint:gosec // the handshake must fail whatever we accept
			if err == nil {
				conn.Close()
				t.Errorf("TLS handshake with SNI %q succeeded; want it rejected", sni)
				continue
			}
			t.Logf("SNI %q rejected: %v", sni, err)
		}
		if up.count() != before {
			t.Error("a request reached the upstream")
		}
	})

	t.Run("unknown Host header is answered 404 by the edge", func(t *testing.T) {
		before := up.count()
		req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/", nil)
		req.Host = "other.example.com"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Upstream") != "" {
			t.Errorf("got %d (upstream %q), want 404 from the edge", resp.StatusCode, resp.Header.Get("X-Upstream"))
		}
		if up.count() != before {
			t.Error("the request reached the upstream")
		}
	})

	t.Run("client refuses other hosts", func(t *testing.T) {
		if _, err := c.Get("https://example.org/"); err == nil || !strings.Contains(err.Error(), "not a host of the edge") {
			t.Errorf("got %v, want the client to refuse", err)
		}
	})
}

// TestEdgePrefixRewrite: ingress-nginx's use-regex + rewrite-target (the prefix example's form)
// strips the prefix; paths outside it reach nothing.
func TestEdgePrefixRewrite(t *testing.T) {
	up := newUpstream(t, "a")
	const host = "shop.example.com"
	e := startEdge(t, ingress("nginx", host, map[string]string{
		"nginx.ingress.kubernetes.io/use-regex":      "true",
		"nginx.ingress.kubernetes.io/rewrite-target": "/$2",
	}, pathSpec{"/auth(/|$)(.*)", networkingv1.PathTypeImplementationSpecific}), up.addr)
	c := e.Client()
	for _, tc := range []struct{ path, upstream string }{
		{"/auth/self-service/login/browser", "/self-service/login/browser"},
		{"/auth/sessions/whoami?x=1&y=2", "/sessions/whoami?x=1&y=2"},
		{"/auth/", "/"},
		{"/auth", "/"},
		{"/AUTH/health/ready", "/health/ready"}, // ingress-nginx's regex locations are case-insensitive
		{"/auth/admin/identities", "/admin/identities"},
	} {
		code, body, from := get(t, c, "https://"+host+tc.path)
		if code != http.StatusOK || from != "a" || body != "a "+tc.upstream {
			t.Errorf("%s: got %d from %q: %q, want the upstream to see %s", tc.path, code, from, body, tc.upstream)
		} else if r := up.last(t); r.Header.Get("X-Forwarded-Host") != host || r.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("%s: upstream saw X-Forwarded-Host %q, X-Forwarded-Proto %q", tc.path, r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"))
		}
	}
	before := up.count()
	for _, p := range []string{"/", "/authx", "/self-service/login/browser", "/x/auth/"} {
		if code, _, from := get(t, c, "https://"+host+p); code != http.StatusNotFound || from != "" {
			t.Errorf("%s: got %d from %q, want 404 from the edge", p, code, from)
		}
	}
	if up.count() != before {
		t.Error("a path outside the prefix reached the upstream")
	}
}

// TestEdgePrefixAndExact: pathType Prefix matches element-wise and keeps the path (no rewrite
// without the annotation); Exact matches only itself.
func TestEdgePrefixAndExact(t *testing.T) {
	up := newUpstream(t, "a")
	const host = "auth.example.com"
	e := startEdge(t, ingress("traefik", host, map[string]string{
		"traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
		"traefik.ingress.kubernetes.io/router.tls":         "true",
	}, pathSpec{"/auth/", networkingv1.PathTypePrefix}, pathSpec{"/health/ready", networkingv1.PathTypeExact}), up.addr)
	c := e.Client()
	for path, want := range map[string]int{
		"/auth": 200, "/auth/": 200, "/auth/x/y": 200, "/authx": 404, "/": 404,
		"/health/ready": 200, "/health/ready/": 404, "/health/alive": 404,
	} {
		code, body, _ := get(t, c, "https://"+host+path)
		if code != want {
			t.Errorf("%s: got %d, want %d", path, code, want)
		}
		if want == 200 && body != "a "+path {
			t.Errorf("%s: the upstream saw %q, want the path unchanged", path, body)
		}
	}
}

// TestEdgeSetBackends: the edge balances over its backends, follows a new set after SetBackends
// (a rollout), and answers 503 with none.
func TestEdgeSetBackends(t *testing.T) {
	a, b, c := newUpstream(t, "a"), newUpstream(t, "b"), newUpstream(t, "c")
	const host = "auth.example.com"
	e := startEdge(t, ingress("nginx", host, nil, pathSpec{"/", networkingv1.PathTypePrefix}), a.addr, b.addr)
	seen := func() map[string]int {
		t.Helper()
		n := map[string]int{}
		cl := e.Client()
		for i := 0; i < 12; i++ {
			code, _, from := get(t, cl, "https://"+host+"/"+strconv.Itoa(i))
			n[fmt.Sprintf("%d %s", code, from)]++
		}
		return n
	}
	if n := seen(); n["200 a"] == 0 || n["200 b"] == 0 || n["200 a"]+n["200 b"] != 12 {
		t.Errorf("two backends: got %v, want both a and b", n)
	}
	if err := e.SetBackends([]string{c.addr}); err != nil {
		t.Fatal(err)
	}
	if n := seen(); n["200 c"] != 12 {
		t.Errorf("after SetBackends(c): got %v, want only c", n)
	}
	if got := e.Backends(); len(got) != 1 || got[0] != c.addr {
		t.Errorf("Backends() = %v", got)
	}
	if err := e.SetBackends(nil); err != nil {
		t.Fatal(err)
	}
	if n := seen(); n["503 "] != 12 {
		t.Errorf("no backends: got %v, want 503 from the edge", n)
	}
	if err := e.SetBackends([]string{"auth.example.com:4433"}); err == nil {
		t.Error("SetBackends took a host name")
	}
	if n := seen(); n["503 "] != 12 {
		t.Errorf("after a refused SetBackends: got %v, want the previous configuration", n)
	}
}

// TestEdgeRefuses: what the edge does not implement is an error before nginx starts, never
// silently ignored.
func TestEdgeRefuses(t *testing.T) {
	bed, ca := bedAndCA(t)
	base := func() *networkingv1.Ingress {
		return ingress("nginx", "auth.example.com", nil, pathSpec{"/", networkingv1.PathTypePrefix})
	}
	for _, tc := range []struct {
		name   string
		want   string
		mutate func(*networkingv1.Ingress)
	}{
		{"other class", `ingressClassName "haproxy"`, func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("haproxy") }},
		{"no class", `ingressClassName ""`, func(i *networkingv1.Ingress) { i.Spec.IngressClassName = nil }},
		{"unimplemented nginx annotation", "nginx.ingress.kubernetes.io/auth-url is not implemented", func(i *networkingv1.Ingress) {
			i.Annotations = map[string]string{"nginx.ingress.kubernetes.io/auth-url": "http://x"}
		}},
		{"nginx annotation on a traefik Ingress", "rewrite-target is not implemented", func(i *networkingv1.Ingress) {
			i.Spec.IngressClassName = ptr.To("traefik")
			i.Annotations = map[string]string{"nginx.ingress.kubernetes.io/rewrite-target": "/"}
		}},
		{"traefik middleware", "router.middlewares is not implemented", func(i *networkingv1.Ingress) {
			i.Spec.IngressClassName = ptr.To("traefik")
			i.Annotations = map[string]string{"traefik.ingress.kubernetes.io/router.middlewares": "shop-strip@kubernetescrd"}
		}},
		{"legacy class annotation", "kubernetes.io/ingress.class is not implemented", func(i *networkingv1.Ingress) {
			i.Annotations = map[string]string{"kubernetes.io/ingress.class": "nginx"}
		}},
		{"default backend", "defaultBackend", func(i *networkingv1.Ingress) {
			i.Spec.DefaultBackend = i.Spec.Rules[0].HTTP.Paths[0].Backend.DeepCopy()
		}},
		{"wildcard host", "wildcard host", func(i *networkingv1.Ingress) {
			i.Spec.Rules[0].Host = "*.example.com"
			i.Spec.TLS[0].Hosts = []string{"*.example.com"}
		}},
		{"no host", "no host", func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = "" }},
		{"host without TLS", "has no spec.tls entry", func(i *networkingv1.Ingress) { i.Spec.TLS = nil }},
		{"ImplementationSpecific without regex", "ImplementationSpecific without use-regex", func(i *networkingv1.Ingress) {
			i.Spec.Rules[0].HTTP.Paths[0].PathType = ptr.To(networkingv1.PathTypeImplementationSpecific)
		}},
		{"Prefix path with regex", "ImplementationSpecific (regex) paths only", func(i *networkingv1.Ingress) {
			i.Annotations = map[string]string{"nginx.ingress.kubernetes.io/rewrite-target": "/$2"}
		}},
		{"path with a quote", `path "/a\"b"`, func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].Path = `/a"b` }},
		{"resource backend", "only a Service backend", func(i *networkingv1.Ingress) {
			i.Spec.Rules[0].HTTP.Paths[0].Backend = networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{
				APIGroup: ptr.To("storage.example.com"), Kind: "Bucket", Name: "b"}}
		}},
		{"two Services", "the edge proxies to one Service", func(i *networkingv1.Ingress) {
			p := *i.Spec.Rules[0].HTTP.Paths[0].DeepCopy()
			p.Path, p.Backend.Service.Name = "/other", "other"
			i.Spec.Rules[0].HTTP.Paths = append(i.Spec.Rules[0].HTTP.Paths, p)
		}},
		{"same prefix twice", "given twice", func(i *networkingv1.Ingress) {
			p := *i.Spec.Rules[0].HTTP.Paths[0].DeepCopy()
			i.Spec.Rules[0].HTTP.Paths[0].Path, p.Path = "/auth", "/auth/"
			i.Spec.Rules[0].HTTP.Paths = append(i.Spec.Rules[0].HTTP.Paths, p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ing := base()
			tc.mutate(ing)
			e, err := bed.StartEdge(ing, nil, ca)
			if err == nil {
				e.Stop()
				t.Fatal("the edge took it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
	if _, err := bed.StartEdge(base(), []string{"10.89.0.5"}, ca); err == nil || !strings.Contains(err.Error(), "10.89.0.5") {
		t.Errorf("a backend without a port: got %v", err)
	}
}
