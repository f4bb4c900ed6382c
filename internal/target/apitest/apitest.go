// Package apitest is a small stand-in for the Kubernetes API server, for in-process tests of the
// plugin's transport: it lists pods and gets Secrets, and serves pods/portforward and pods/exec
// over SPDY (refusing the WebSocket upgrade, so that clients take their SPDY fallback), with
// optional RBAC denials. Port-forwards reach real local servers; execs run a Go function. The
// real API server, kubelet and WebSocket paths are the e2e suite's business.
package apitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// ExecFunc runs an exec'd command and returns its exit code.
type ExecFunc func(pod, container string, command []string, stdout, stderr io.Writer) int

// Server is the fake API server. Set its fields before the calls they serve.
type Server struct {
	URL string

	mu      sync.Mutex
	pods    []corev1.Pod
	secrets []corev1.Secret
	// forward maps a pod port to the local address its port-forwards reach.
	forward map[int]string
	exec    ExecFunc
	deny    map[string]bool
	log     []string
}

// New starts a fake API server, stopped at the end of the test.
func New(t testing.TB) *Server {
	s := &Server{forward: map[int]string{}, deny: map[string]bool{}}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(hs.Close)
	s.URL = hs.URL
	return s
}

// AddPod adds a pod (its namespace must be set).
func (s *Server) AddPod(p corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods = append(s.pods, p)
}

// AddSecret adds a Secret.
func (s *Server) AddSecret(sec corev1.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, sec)
}

// Forward makes port-forwards to port of any pod reach addr.
func (s *Server) Forward(port int, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forward[port] = addr
}

// OnExec sets what an exec runs.
func (s *Server) OnExec(f ExecFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exec = f
}

// Deny makes RBAC refuse a resource: "pods", "secrets", "pods/portforward" or "pods/exec".
func (s *Server) Deny(resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny[resource] = true
}

// Requests returns "METHOD path" of every request served.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// RESTConfig is a client config for the server.
func (s *Server) RESTConfig() *rest.Config {
	return &rest.Config{Host: s.URL}
}

// Kubeconfig writes a kubeconfig for the server, with namespace as the context's namespace,
// and returns its path.
func (s *Server) Kubeconfig(t testing.TB, namespace string) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: %q}
users:
- name: tester
  user: {token: test-token}
contexts:
- name: fake
  context: {cluster: fake, user: tester, namespace: %q}
current-context: fake
`, s.URL, namespace)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.Path)
	s.mu.Unlock()

	// /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]]
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
	if !strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/") || len(parts) < 2 {
		status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	ns, resource := parts[0], parts[1]
	name, sub := "", ""
	if len(parts) > 2 {
		name = parts[2]
	}
	if len(parts) > 3 {
		sub = parts[3]
	}
	rbac := resource
	if sub != "" {
		rbac += "/" + sub
	}
	s.mu.Lock()
	denied := s.deny[rbac]
	s.mu.Unlock()
	if denied {
		verb := map[string]string{http.MethodGet: "get", http.MethodPost: "create"}[r.Method]
		if name == "" {
			verb = "list"
		}
		if sub != "" {
			verb = "create"
		}
		what := resource
		if name != "" {
			what = fmt.Sprintf("%s %q", resource, name)
		}
		status(w, http.StatusForbidden, "Forbidden", fmt.Sprintf(
			"%s is forbidden: User \"tester\" cannot %s resource %q in API group \"\" in the namespace %q",
			what, verb, rbac, ns))
		return
	}

	switch {
	case resource == "pods" && name == "" && r.Method == http.MethodGet:
		s.listPods(w, r, ns)
	case resource == "secrets" && name != "" && sub == "" && r.Method == http.MethodGet:
		s.getSecret(w, ns, name)
	case resource == "pods" && (sub == "portforward" || sub == "exec"):
		if r.Header.Get("Upgrade") != "" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			// Not offered here: the client falls back to SPDY, as against an old API server.
			http.Error(w, "websocket upgrades are not served by apitest", http.StatusBadRequest)
			return
		}
		if sub == "portforward" {
			s.portForward(w, r)
		} else {
			s.execute(w, r, name)
		}
	default:
		status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", resource, name))
	}
}

func (s *Server) listPods(w http.ResponseWriter, r *http.Request, ns string) {
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		status(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	s.mu.Lock()
	for _, p := range s.pods {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			list.Items = append(list.Items, p)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getSecret(w http.ResponseWriter, ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range s.secrets {
		if sec.Namespace == ns && sec.Name == name {
			sec.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
			writeJSON(w, http.StatusOK, sec)
			return
		}
	}
	status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("secrets %q not found", name))
}

// portForward speaks the kubelet's SPDY port-forward protocol: per connection, an error stream
// and a data stream paired by request ID.
func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	if _, err := httpstream.Handshake(r, w, []string{"portforward.k8s.io"}); err != nil {
		return
	}
	type pair struct{ errS, data httpstream.Stream }
	var mu sync.Mutex
	pairs := map[string]*pair{}
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, _ <-chan struct{}) error {
		h := st.Headers()
		id := h.Get(corev1.PortForwardRequestIDHeader)
		mu.Lock()
		p := pairs[id]
		if p == nil {
			p = &pair{}
			pairs[id] = p
		}
		if h.Get(corev1.StreamType) == corev1.StreamTypeError {
			p.errS = st
		} else {
			p.data = st
		}
		ready := p.errS != nil && p.data != nil
		if ready {
			delete(pairs, id)
		}
		mu.Unlock()
		if ready {
			port, _ := strconv.Atoi(h.Get(corev1.PortHeader))
			go s.forwardOne(port, p.errS, p.data)
		}
		return nil
	})
	if conn == nil {
		return
	}
	<-conn.CloseChan()
}

func (s *Server) forwardOne(port int, errS, data httpstream.Stream) {
	defer errS.Close()
	s.mu.Lock()
	addr, ok := s.forward[port]
	s.mu.Unlock()
	if !ok {
		addr = "127.0.0.1:1"
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		// As the kubelet words it.
		fmt.Fprintf(errS, "error forwarding port %d to pod: failed to connect to localhost:%d inside namespace: %v", port, port, err)
		data.Close()
		return
	}
	defer c.Close()
	go func() {
		_, _ = io.Copy(c, data)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(data, c)
	data.Close()
}

// execute speaks the v4 remote command protocol over SPDY: stdout, stderr and error streams,
// the exit status as a Status on the error stream.
func (s *Server) execute(w http.ResponseWriter, r *http.Request, pod string) {
	q := r.URL.Query()
	if _, err := httpstream.Handshake(r, w, []string{"v4.channel.k8s.io"}); err != nil {
		return
	}
	want := 1
	if q.Get("stdout") == "true" {
		want++
	}
	if q.Get("stderr") == "true" {
		want++
	}
	streams := make(chan httpstream.Stream, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, _ <-chan struct{}) error {
		streams <- st
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	var errS, stdout, stderr httpstream.Stream
	for i := 0; i < want; i++ {
		st := <-streams
		switch st.Headers().Get(corev1.StreamType) {
		case corev1.StreamTypeError:
			errS = st
		case corev1.StreamTypeStdout:
			stdout = st
		case corev1.StreamTypeStderr:
			stderr = st
		}
	}
	s.mu.Lock()
	run := s.exec
	s.mu.Unlock()
	code := 127
	if run != nil {
		var o, e io.Writer = io.Discard, io.Discard
		if stdout != nil {
			o = stdout
		}
		if stderr != nil {
			e = stderr
		}
		code = run(pod, q.Get("container"), q["command"], o, e)
	}
	for _, st := range []httpstream.Stream{stdout, stderr} {
		if st != nil {
			st.Close()
		}
	}
	st := metav1.Status{Status: metav1.StatusSuccess}
	if code != 0 {
		st = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: exit status %d", code),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(code)}}}}
	}
	_ = json.NewEncoder(errS).Encode(st)
	errS.Close()
	<-conn.CloseChan()
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code),
	})
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
