package testbed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Edge is the bed's reverse proxy in front of the injected pods' public API: Debian's nginx (the
// data plane ingress-nginx runs), configured from a networking.k8s.io/v1 Ingress — the shipped
// examples/ingress files — so what the tests route through is what the examples say. It listens on
// 127.0.0.1 and a free port only, terminates TLS with a certificate for the Ingress's hosts from
// the bed's CA, and proxies to backend addresses the caller resolved from the Ingress's Service
// (pod IP:port, as ingress-nginx proxies to endpoints, not to the ClusterIP).
//
// It implements the portable Ingress semantics (host rules, pathType Prefix and Exact, TLS) plus
// ingress-nginx's use-regex/rewrite-target annotations (class nginx), and accepts Traefik's
// router.entrypoints=websecure and router.tls=true (class traefik), which say "HTTPS only", as
// the edge is. Anything else that would change routing — other controller annotations, a default
// backend, wildcard hosts, resource backends, more than one Service, a host without TLS — is
// refused with an error, not ignored.
//
// nginx runs as one process (master_process off) so that the PID the bed started is the whole
// proxy: it dies with the test binary (Pdeathsig) and stops by that PID, with no orphaned workers
// (nginx's workers outlive a killed master). SetBackends rewrites the config and restarts it.
type Edge struct {
	// Addr is host:port of the HTTPS listener (127.0.0.1 and a free port).
	Addr string
	// Hosts are the Ingress's rule hosts, each served with the certificate from the bed's CA.
	Hosts []string
	// CAPEM is the CA that signed the edge's certificate (the bed's).
	CAPEM []byte
	Proc  *Proc

	mu         sync.Mutex
	spec       *edgeSpec
	bed        *Bed
	name       string
	dir        string
	bin        string
	port       int
	ctrlPort   int
	generation int
	backends   []string
}

// edgeUpstream is the nginx upstream of an edge (its access log names the address it chose).
const edgeUpstream = "edge_backend"

// StartEdge starts nginx for the Ingress, proxying to backends ("IP:port" each, e.g. the injected
// pods' IPs on the bridge and 4433; see EdgeBackends). An Ingress the edge cannot serve exactly as
// written is refused before anything starts. Empty backends make every route answer 503, as
// ingress-nginx does for a Service without ready endpoints.
func (b *Bed) StartEdge(ing *networkingv1.Ingress, backends []string, ca *CA) (*Edge, error) {
	spec, err := parseEdgeIngress(ing)
	if err != nil {
		return nil, err
	}
	if ca == nil {
		return nil, errors.New("edge: a CA is required (the edge's certificate is issued from it)")
	}
	if err := checkBackends(backends); err != nil {
		return nil, err
	}
	bin, err := HostTool("nginx", "/usr/sbin/nginx")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	name := "edge-" + ing.Name
	dir := b.Path(name)
	for i := 2; ; i++ { // several edges for one Ingress name: edge-NAME-2, ...
		if err := os.Mkdir(dir, 0o755); err == nil {
			break
		} else if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		name = fmt.Sprintf("edge-%s-%d", ing.Name, i)
		dir = b.Path(name)
	}
	for _, d := range []string{"tls", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := ca.WriteServing(filepath.Join(dir, "tls"), spec.hosts[0], spec.hosts...); err != nil {
		return nil, fmt.Errorf("edge certificate: %w", err)
	}
	e := &Edge{
		Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Hosts: slices.Clone(spec.hosts), CAPEM: ca.CertPEM,
		spec: spec, bed: b, name: name, dir: dir, bin: bin, port: ports[0], ctrlPort: ports[1], generation: 1,
		backends: slices.Clone(backends),
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := e.writeConfig(conf); err != nil {
		return nil, err
	}
	if err := e.test(conf); err != nil {
		return nil, err
	}
	if err := e.start(conf); err != nil {
		return nil, err
	}
	return e, nil
}

// SetBackends points the edge at new backend addresses (pods get new IPs on a rollout) and
// returns once nginx serves them. The new configuration is checked with `nginx -t` first; then
// nginx is restarted on the same port (stopped by its PID, started again): in the one-process
// mode a SIGHUP reload is not reliable (nginx 1.22 runs out of connections after it), and
// connections are refused for the few milliseconds in between. A refused configuration leaves the
// running edge untouched.
func (e *Edge) SetBackends(backends []string) error {
	if err := checkBackends(backends); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old, oldGen := e.backends, e.generation
	e.backends, e.generation = slices.Clone(backends), e.generation+1
	next := filepath.Join(e.dir, "nginx.conf.next")
	err := e.writeConfig(next)
	if err == nil {
		err = e.test(next)
	}
	if err != nil {
		e.backends, e.generation = old, oldGen
		return err
	}
	conf := filepath.Join(e.dir, "nginx.conf")
	if err := os.Rename(next, conf); err != nil {
		return err
	}
	e.Proc.Stop()
	return e.start(conf)
}

// start runs nginx on conf and waits until it serves the current generation.
func (e *Edge) start(conf string) error {
	name := e.name
	if e.generation > 1 {
		name = fmt.Sprintf("%s-conf%d", e.name, e.generation)
	}
	// -e: errors before the config's error_log is read also go to the process log, not to the
	// compiled-in path.
	p, err := e.bed.Start(name, nil, e.bin, "-p", e.dir+"/", "-c", conf, "-e", "stderr")
	if err != nil {
		return err
	}
	e.Proc = p
	return p.WaitReady(30*time.Second, e.atGeneration(e.generation))
}

// Backends returns the addresses the edge proxies to.
func (e *Edge) Backends() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.backends)
}

// Config returns the nginx configuration the edge runs.
func (e *Edge) Config() string {
	b, err := os.ReadFile(filepath.Join(e.dir, "nginx.conf"))
	if err != nil {
		return fmt.Sprintf("(no config: %v)", err)
	}
	return string(b)
}

// Logs returns the end of the edge's log: nginx's errors and its access log (one line per
// request: client, host, request, status, upstream address and status).
func (e *Edge) Logs(lines int) string { return e.Proc.Tail(lines) }

// Stop stops nginx (the PID the bed started only).
func (e *Edge) Stop() { e.Proc.Stop() }

// Client returns an HTTPS client for the edge's hosts: a URL such as https://auth.example.com/x
// (port 443 implied, or any port) is dialled at the edge's address, with SNI and the Host header
// from the URL and the certificate verified against the bed's CA. Any other host is refused
// rather than resolved, so nothing a test sends leaves the machine; redirects to the edge's hosts
// are followed through the edge.
func (e *Edge) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.CAPEM)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(e.Hosts, strings.ToLower(host)) {
				return nil, fmt.Errorf("edge client: %s is not a host of the edge (%s)", host, strings.Join(e.Hosts, ", "))
			}
			return dialer.DialContext(ctx, network, e.Addr)
		},
	}}
}

// atGeneration is ready when the control listener reports the configuration generation gen.
func (e *Edge) atGeneration(gen int) func(ctx context.Context) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/edge-generation", e.ctrlPort)
	// A fresh connection each time: after a reload only new connections see the new cycle.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if got := strings.TrimSpace(string(body)); got != strconv.Itoa(gen) {
			return fmt.Errorf("edge serves configuration %q, want %d", got, gen)
		}
		return nil
	}
}

// test runs `nginx -t` on a config, so a bad one fails with nginx's own message.
func (e *Edge) test(conf string) error {
	out, err := output(e.bin, "-t", "-q", "-p", e.dir+"/", "-c", conf, "-e", "stderr")
	if err != nil {
		return fmt.Errorf("edge: nginx refused its generated config: %w\n%s", err, out)
	}
	return nil
}

func (e *Edge) writeConfig(path string) error {
	return writeAtomic(path, []byte(e.spec.nginxConfig(e.dir, e.port, e.ctrlPort, e.generation, e.backends)), 0o644)
}

func checkBackends(backends []string) error {
	for _, a := range backends {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("edge backend %q: %w", a, err)
		}
		if net.ParseIP(h) == nil {
			return fmt.Errorf("edge backend %q: want an IP address (the edge resolves nothing)", a)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("edge backend %q: bad port", a)
		}
	}
	return nil
}

// LoadIngress reads an Ingress from a YAML file strictly (unknown or duplicate fields are errors),
// for StartEdge. The file must hold exactly one networking.k8s.io/v1 Ingress.
func LoadIngress(file string) (*networkingv1.Ingress, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var ing networkingv1.Ingress
	if err := yaml.UnmarshalStrict(b, &ing); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if ing.APIVersion != "networking.k8s.io/v1" || ing.Kind != "Ingress" {
		return nil, fmt.Errorf("%s: a %s %s, want a networking.k8s.io/v1 Ingress", file, ing.APIVersion, ing.Kind)
	}
	return &ing, nil
}

// EdgeBackends resolves the Ingress's Service backend to what ingress-nginx proxies to: the ready
// endpoints of the Service's EndpointSlices, as "IP:port" with the port of the slice's port that
// has the Service port's name. ing.Namespace names the namespace (set it when the file has none).
func EdgeBackends(ctx context.Context, cs kubernetes.Interface, ing *networkingv1.Ingress) ([]string, error) {
	spec, err := parseEdgeIngress(ing)
	if err != nil {
		return nil, err
	}
	if ing.Namespace == "" {
		return nil, errors.New("edge backends: the Ingress has no namespace")
	}
	svc, err := cs.CoreV1().Services(ing.Namespace).Get(ctx, spec.service.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("edge backends: %w", err)
	}
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if (spec.service.Port.Name != "" && p.Name == spec.service.Port.Name) ||
			(spec.service.Port.Name == "" && p.Port == spec.service.Port.Number) {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil, fmt.Errorf("edge backends: Service %s/%s has no port %s", svc.Namespace, svc.Name, portString(spec.service.Port))
	}
	list, err := cs.DiscoveryV1().EndpointSlices(ing.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return nil, fmt.Errorf("edge backends: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range list.Items {
		var port int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == sp.Name && p.Port != nil {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addr := net.JoinHostPort(a, strconv.Itoa(int(port)))
				if !seen[addr] {
					seen[addr] = true
					out = append(out, addr)
				}
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// CheckEdgeIngress reports whether StartEdge can serve the Ingress exactly as written (nil), or
// what it does not implement.
func CheckEdgeIngress(ing *networkingv1.Ingress) error {
	_, err := parseEdgeIngress(ing)
	return err
}

// The annotations the edge implements. Any other annotation whose key names an ingress
// controller (it contains "ingress" or "traefik") is refused: it would change routing in the
// real controller and be ignored here.
const (
	annNginxRewriteTarget = "nginx.ingress.kubernetes.io/rewrite-target"
	annNginxUseRegex      = "nginx.ingress.kubernetes.io/use-regex"
	annTraefikEntrypoints = "traefik.ingress.kubernetes.io/router.entrypoints"
	annTraefikTLS         = "traefik.ingress.kubernetes.io/router.tls"
)

// edgeSpec is what the edge serves, checked.
type edgeSpec struct {
	hosts   []string              // sorted
	paths   map[string][]edgePath // by host
	regex   bool                  // ingress-nginx use-regex: every path is a case-insensitive regex
	rewrite string                // ingress-nginx rewrite-target, "" for none
	service networkingv1.IngressServiceBackend
}

type edgePath struct {
	path string
	typ  networkingv1.PathType
}

var (
	// The characters ingress-nginx's strict path validation allows in Prefix and Exact paths.
	plainPath = regexp.MustCompile(`^/[A-Za-z0-9/_.~-]*$`)
	// A rewrite target: a path with $n references, nothing that could end an nginx directive.
	rewriteTarget = regexp.MustCompile(`^/[A-Za-z0-9/_.~$-]*$`)
)

func parseEdgeIngress(ing *networkingv1.Ingress) (*edgeSpec, error) {
	if ing == nil {
		return nil, errors.New("edge: no Ingress")
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	class := ""
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	if class != "nginx" && class != "traefik" {
		bad("spec.ingressClassName %q: the edge plays nginx or traefik", class)
	}
	s := &edgeSpec{paths: map[string][]edgePath{}}
	keys := make([]string, 0, len(ing.Annotations))
	for k := range ing.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ing.Annotations[k]
		switch {
		case k == annNginxRewriteTarget && class == "nginx":
			if !rewriteTarget.MatchString(v) {
				bad("annotation %s: %q is not a path the edge can rewrite to", k, v)
			}
			s.rewrite, s.regex = v, true // ingress-nginx: rewrite-target implies use-regex
		case k == annNginxUseRegex && class == "nginx":
			switch v {
			case "true":
				s.regex = true
			case "false":
			default:
				bad("annotation %s: %q, want true or false", k, v)
			}
		case k == annTraefikEntrypoints && class == "traefik":
			if v != "websecure" {
				bad("annotation %s: %q; the edge is one HTTPS entrypoint (websecure)", k, v)
			}
		case k == annTraefikTLS && class == "traefik":
			if v != "true" {
				bad("annotation %s: %q; the edge serves TLS only", k, v)
			}
		case strings.Contains(k, "ingress") || strings.Contains(k, "traefik"):
			bad("annotation %s is not implemented by the edge (for class %q)", k, class)
		}
	}
	if ing.Spec.DefaultBackend != nil {
		bad("spec.defaultBackend is not implemented by the edge")
	}
	tlsHosts := map[string]bool{}
	for i, t := range ing.Spec.TLS {
		for _, h := range t.Hosts {
			if strings.Contains(h, "*") {
				bad("spec.tls[%d]: wildcard host %q is not implemented by the edge", i, h)
			}
			tlsHosts[h] = true
		}
	}
	if len(ing.Spec.Rules) == 0 {
		bad("spec.rules: none; the edge routes by host")
	}
	seen := map[string]bool{}
	for i, r := range ing.Spec.Rules {
		at := fmt.Sprintf("spec.rules[%d]", i)
		switch {
		case r.Host == "":
			bad("%s: no host; the edge routes by host only", at)
		case strings.Contains(r.Host, "*"):
			bad("%s: wildcard host %q is not implemented by the edge", at, r.Host)
		case len(validation.IsDNS1123Subdomain(r.Host)) > 0:
			bad("%s: host %q: %s", at, r.Host, strings.Join(validation.IsDNS1123Subdomain(r.Host), "; "))
		case !tlsHosts[r.Host]:
			bad("%s: host %q has no spec.tls entry; the edge serves HTTPS only", at, r.Host)
		}
		if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
			bad("%s: no http paths", at)
			continue
		}
		if !slices.Contains(s.hosts, r.Host) {
			s.hosts = append(s.hosts, r.Host)
		}
		for j, p := range r.HTTP.Paths {
			at := fmt.Sprintf("%s.http.paths[%d]", at, j)
			var typ networkingv1.PathType
			if p.PathType != nil {
				typ = *p.PathType
			}
			switch {
			case typ == "":
				bad("%s: no pathType", at)
			case s.regex && typ != networkingv1.PathTypeImplementationSpecific:
				bad("%s: pathType %s with use-regex/rewrite-target; the edge takes ImplementationSpecific (regex) paths only then", at, typ)
			case s.regex:
				if !strings.HasPrefix(p.Path, "/") || strings.ContainsAny(p.Path, "\"'\\; \t\r\n") {
					bad("%s: regex path %q: must start with / and hold no quote, backslash, ; or space", at, p.Path)
				} else if _, err := regexp.Compile("(?i)" + p.Path); err != nil {
					bad("%s: regex path %q: %v", at, p.Path, err)
				}
			case typ == networkingv1.PathTypeImplementationSpecific:
				bad("%s: pathType ImplementationSpecific without use-regex: not implemented by the edge", at)
			case typ != networkingv1.PathTypePrefix && typ != networkingv1.PathTypeExact:
				bad("%s: pathType %q", at, typ)
			case !plainPath.MatchString(p.Path):
				bad("%s: path %q: want / and [A-Za-z0-9/_.~-]", at, p.Path)
			}
			key := r.Host + " " + string(typ) + " " + p.Path
			if typ == networkingv1.PathTypePrefix && !s.regex && p.Path != "/" {
				key = r.Host + " " + string(typ) + " " + strings.TrimRight(p.Path, "/") // /auth and /auth/ are one prefix
			}
			if seen[key] {
				bad("%s: path %q (%s) given twice for %s", at, p.Path, typ, r.Host)
			}
			seen[key] = true
			be := p.Backend
			switch {
			case be.Resource != nil || be.Service == nil:
				bad("%s: backend: only a Service backend is implemented by the edge", at)
			case s.service.Name == "":
				s.service = *be.Service
			case *be.Service != s.service:
				bad("%s: backend %s:%s; the edge proxies to one Service (%s:%s)", at, be.Service.Name,
					portString(be.Service.Port), s.service.Name, portString(s.service.Port))
			}
			s.paths[r.Host] = append(s.paths[r.Host], edgePath{path: p.Path, typ: typ})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("edge: Ingress %s/%s: %s", ing.Namespace, ing.Name, strings.Join(problems, "; "))
	}
	sort.Strings(s.hosts)
	return s, nil
}

func portString(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// nginxConfig renders the configuration: one TLS server per host, a default server that refuses
// every other TLS name (and answers 404 to any other Host header), and a plain-HTTP control
// listener on 127.0.0.1 that reports the configuration's generation.
func (s *edgeSpec) nginxConfig(dir string, port, ctrlPort, gen int, backends []string) string {
	var c strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&c, format+"\n", a...) }
	w("# Generated by internal/testbed (edge.go) from an Ingress; configuration %d.", gen)
	w("master_process off;") // one process: the PID the bed started is the whole proxy
	w("daemon off;")
	w("pid %s/nginx.pid;", dir)
	w("lock_file %s/nginx.lock;", dir)
	w("error_log stderr notice;")
	w("events { worker_connections 1024; }")
	w("http {")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("  %s_temp_path %s/tmp/%s;", t, dir, t)
	}
	w(`  log_format edge '$remote_addr "$host" "$request" $status upstream=$upstream_addr/$upstream_status ${request_time}s';`)
	w("  access_log /dev/stdout edge;")
	w("  server_tokens off;")
	// ingress-nginx: Host and X-Forwarded-Host carry the client's Host header (with its port).
	w(`  map $http_host $edge_host { "" $host; default $http_host; }`)
	w(`  map $http_upgrade $edge_connection { default upgrade; "" ""; }`)
	if len(backends) > 0 {
		w("  upstream %s {", edgeUpstream)
		for _, b := range backends {
			w("    server %s max_fails=0;", b)
		}
		w("    keepalive 16;")
		w("  }")
	}
	w("  server {")
	w("    listen 127.0.0.1:%d ssl default_server;", port)
	w("    ssl_reject_handshake on;")
	w("    location / { return 404; }")
	w("  }")
	for _, h := range s.hosts {
		w("  server {")
		w("    listen 127.0.0.1:%d ssl;", port)
		w("    server_name %s;", h)
		w("    ssl_certificate %s/tls/tls.crt;", dir)
		w("    ssl_certificate_key %s/tls/tls.key;", dir)
		w("    ssl_protocols TLSv1.2 TLSv1.3;")
		paths := slices.Clone(s.paths[h])
		// ingress-nginx orders a host's paths longest first (it matters for regex locations,
		// which nginx tries in order; prefix locations take the longest match anyway).
		sort.SliceStable(paths, func(i, j int) bool { return len(paths[i].path) > len(paths[j].path) })
		for _, p := range paths {
			switch {
			case s.regex:
				w(`    location ~* "^%s" {`, p.path)
				s.proxy(w, p.path, backends)
			case p.typ == networkingv1.PathTypeExact:
				w("    location = %s {", p.path)
				s.proxy(w, "", backends)
			default: // Prefix: element-wise, so /auth matches /auth and /auth/x but not /authx
				trimmed := strings.TrimRight(p.path, "/")
				if trimmed == "" {
					w("    location / {")
					s.proxy(w, "", backends)
					continue
				}
				// An Exact path of the same value wins (Kubernetes: Exact before Prefix).
				if !slices.Contains(paths, edgePath{path: trimmed, typ: networkingv1.PathTypeExact}) {
					w("    location = %s {", trimmed)
					s.proxy(w, "", backends)
				}
				w("    location %s/ {", trimmed)
				s.proxy(w, "", backends)
			}
		}
		w("  }")
	}
	w("  server {")
	w("    listen 127.0.0.1:%d;", ctrlPort)
	w("    access_log off;")
	w(`    location = /edge-generation { return 200 "%d\n"; }`, gen)
	w("    location / { return 404; }")
	w("  }")
	w("}")
	return c.String()
}

// proxy writes a location's body and closing brace.
func (s *edgeSpec) proxy(w func(string, ...any), regexPath string, backends []string) {
	if s.rewrite != "" && regexPath != "" {
		// As ingress-nginx writes it: the path regex, case-insensitive, rewritten to the target.
		w(`      rewrite "(?i)%s" %s break;`, regexPath, s.rewrite)
	}
	if len(backends) == 0 {
		w("      return 503;") // no ready endpoints
		w("    }")
		return
	}
	w("      proxy_pass http://%s;", edgeUpstream)
	w("      proxy_http_version 1.1;")
	w("      proxy_set_header Connection $edge_connection;")
	w("      proxy_set_header Upgrade $http_upgrade;")
	w("      proxy_set_header Host $edge_host;")
	w("      proxy_set_header X-Real-IP $remote_addr;")
	// ingress-nginx's default (use-forwarded-headers off): the client's own X-Forwarded-For is
	// replaced, not trusted and appended to.
	w("      proxy_set_header X-Forwarded-For $remote_addr;")
	w("      proxy_set_header X-Forwarded-Host $edge_host;")
	w("      proxy_set_header X-Forwarded-Port $server_port;")
	w("      proxy_set_header X-Forwarded-Proto https;")
	w("      proxy_set_header X-Forwarded-Scheme https;")
	w("      proxy_set_header X-Scheme https;")
	w("      proxy_redirect off;")
	w("      proxy_buffering off;")
	w("      proxy_connect_timeout 5s;")
	w("      proxy_next_upstream error timeout;")
	w("    }")
}
