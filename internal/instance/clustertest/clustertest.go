// Package clustertest gives the tests of internal/instance and internal/cli a real Kubernetes
// control plane to talk to: etcd, kube-apiserver (with RBAC and an audit log) and kwok, started by
// package testbed (internal/testbed). kwok makes pods on its node Running and Ready without running
// anything, and serves the API server's pods/portforward and pods/exec: a kwok PortForward object
// leads a pod's port to a local address (a real Kratos, an HTTP server), a kwok Exec object runs
// the exec'd command as a local process. Pods whose status must say something else (not Ready,
// crashing, unschedulable) live on a Node no kubelet manages, with their status written through
// the status subresource; that node names kwok as its kubelet, so their streams work too. RBAC is
// the API server's own: the bed's users alice and bob have no
// rights until a test grants them some with a Role and RoleBinding.
//
// It is imported by tests only.
package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// Node names: KwokNode is managed by kwok (pods become Running and Ready); PlainNode is managed
// by nobody, so a pod's status stays what a test writes, but its kubelet endpoint is kwok's, so
// the port-forwards and execs of its pods work as on KwokNode.
const (
	KwokNode  = "kwok-0"
	PlainNode = "plain"
)

// Options tunes the control plane.
type Options struct {
	// FeatureGates are kube-apiserver feature gates (e.g. "PortForwardWebsockets=false").
	FeatureGates []string
	// PrependPath directories are put first on the PATH kwok inherits: kwok looks up an exec'd
	// command on its own PATH (the Exec object's envs only reach the process it starts).
	PrependPath []string
}

// Cluster is the running control plane and kwok.
type Cluster struct {
	Bed    *testbed.Bed
	CP     *testbed.ControlPlane
	Kwok   *testbed.Kwok
	Client kubernetes.Interface
	// AuditLog is the API server's audit log (JSON lines).
	AuditLog string
	// Startup is how long the control plane and kwok took to come up.
	Startup time.Duration
	seq     atomic.Int64
}

// auditPolicy records every request of the bed's unprivileged users and every stream request
// (port-forward, exec) at Metadata level: enough to see which calls a command made and how
// (WebSocket GET or SPDY POST, with the response code).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [alice, bob]
- level: Metadata
  resources: [{group: "", resources: [pods/portforward, pods/exec]}]
- level: None
`

// Start brings up etcd, kube-apiserver and kwok with a kwok node and a plain node. Call Close
// when done (from TestMain).
func Start(opts Options) (*Cluster, error) {
	start := time.Now()
	b, err := testbed.New("")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bed: b}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	policy := b.Path("audit", "policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	c.AuditLog = b.Path("audit", "audit.log")
	args := []string{"--audit-policy-file", policy, "--audit-log-path", c.AuditLog, "--audit-log-format", "json",
		"--audit-log-mode", "blocking"}
	if len(opts.FeatureGates) > 0 {
		args = append(args, "--feature-gates", strings.Join(opts.FeatureGates, ","))
	}
	if c.CP, err = b.StartControlPlane(testbed.ControlPlaneOptions{APIServerArgs: args}); err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	c.Client = c.CP.Client
	if len(opts.PrependPath) > 0 {
		old := os.Getenv("PATH")
		os.Setenv("PATH", strings.Join(append(append([]string{}, opts.PrependPath...), old), string(os.PathListSeparator)))
		defer os.Setenv("PATH", old) // only kwok needs it
	}
	if c.Kwok, err = b.StartKwok(c.CP); err != nil {
		return nil, fmt.Errorf("kwok: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kn, err := c.Kwok.AddNode(ctx, KwokNode)
	if err != nil {
		return nil, err
	}
	// The plain node's status names kwok's address and port as its kubelet's: the API server
	// sends the port-forwards and execs of its pods to kwok, while their status stays the tests'.
	plain := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: PlainNode, Labels: map[string]string{"kubernetes.io/hostname": PlainNode}}}
	if plain, err = c.Client.CoreV1().Nodes().Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("node %s: %w", PlainNode, err)
	}
	plain.Status.Addresses = kn.Status.Addresses
	plain.Status.DaemonEndpoints = kn.Status.DaemonEndpoints
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, plain, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("node %s status: %w", PlainNode, err)
	}
	c.Startup = time.Since(start)
	ok = true
	return c, nil
}

// Close stops every process of the cluster and removes its files.
func (c *Cluster) Close() { c.Bed.Close() }

// Main runs a package's tests (a *testing.M, or a wrapper of one) against a fresh cluster and
// exits; *c is set before m.Run.
func Main(m interface{ Run() int }, opts Options, c **Cluster) {
	cl, err := Start(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clustertest: %v\n", err)
		os.Exit(1)
	}
	*c = cl
	fmt.Fprintf(os.Stderr, "clustertest: kube-apiserver and kwok up in %s\n", cl.Startup.Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		for _, p := range []string{"kube-apiserver", "kwok"} {
			fmt.Fprintf(os.Stderr, "--- end of %s log ---\n%s\n", p, testbed.TailFile(cl.Bed.Path("logs", p+".log"), 25))
		}
	}
	cl.Close()
	os.Exit(code)
}

// Namespace creates a fresh namespace (name prefix-N) with its default ServiceAccount (no
// controller manager runs to create it, and pods need it).
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, c.seq.Add(1))
	ctx := Context(t)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("default ServiceAccount in %s: %v", ns, err)
	}
	return ns
}

// Kubeconfig writes a kubeconfig for a bed user ("admin", "alice", "bob") whose context's
// namespace is ns, and returns its path.
func (c *Cluster) Kubeconfig(t testing.TB, user, ns string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := c.CP.WriteKubeconfig(p, user); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Contexts[cfg.CurrentContext].Namespace = ns
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Config is a client config acting as a bed user.
func (c *Cluster) Config(user string) *rest.Config { return c.CP.UserConfig(user) }

// Clientset is a clientset acting as a bed user.
func (c *Cluster) Clientset(t testing.TB, user string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config(user))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Grant gives user the rules in namespace ns, with a Role and a RoleBinding of the given name.
func (c *Cluster) Grant(t testing.TB, ns, name, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := Context(t)
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("Role %s/%s: %v", ns, name, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("RoleBinding %s/%s: %v", ns, name, err)
	}
	// RBAC is enforced from the API server's informer cache: wait until it allows the first rule.
	if len(rules) > 0 && len(rules[0].Verbs) > 0 && len(rules[0].Resources) > 0 {
		c.waitAllowed(t, ns, user, rules[0].Verbs[0], rules[0].Resources[0])
	}
}

// Rule is a PolicyRule on core-group resources.
func Rule(resources []string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: resources, Verbs: verbs}
}

func (c *Cluster) waitAllowed(t testing.TB, ns, user, verb, resource string) {
	t.Helper()
	res, sub, _ := strings.Cut(resource, "/")
	deadline := time.Now().Add(10 * time.Second)
	for {
		allowed, err := c.Can(ns, user, verb, res, sub)
		if err == nil && allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RBAC: %s still may not %s %s in %s (%v)", user, verb, resource, ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Can asks the API server (SubjectAccessReview) whether user may verb resource[/sub] in ns.
func (c *Cluster) Can(ns, user, verb, resource, sub string) (bool, error) {
	return can(c.Client, ns, user, verb, resource, sub)
}

// Pod is an injected pod as the injector makes it (see docs/architecture.md, 'What gets
// injected'): opted in and labelled with its instance, the status annotation, a kratos-config
// init container, Kratos as a native sidecar (init container with restartPolicy Always) running
// `kratos serve -c /etc/kratos/kratos.yaml`, and the app container; bound to the kwok node. It
// passes instance.Injected.
func Pod(ns, name, instance string) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			inject.LabelInstance: instance, inject.LabelInject: "true", "app": instance},
			Annotations: map[string]string{inject.AnnotationStatus: inject.Status{Version: "test", SpecHash: "0123456789abcdef"}.String()}},
		Spec: corev1.PodSpec{
			NodeName:    KwokNode,
			Tolerations: []corev1.Toleration{testbed.KwokToleration},
			InitContainers: []corev1.Container{
				{Name: inject.ContainerConfig, Image: testbed.InjectorImage, Args: []string{"render"}},
				{Name: inject.ContainerKratos, Image: testbed.KratosImage, RestartPolicy: &always,
					Command: []string{"kratos"}, Args: []string{"serve", "-c", "/etc/kratos/kratos.yaml"},
					Ports: []corev1.ContainerPort{{Name: "public", ContainerPort: 4433}, {Name: "admin", ContainerPort: 4434}}},
			},
			Containers: []corev1.Container{{Name: "app", Image: testbed.BusyboxImage}},
		},
	}
}

// ReadyStatus is the status of a Pod that runs and is Ready: kratos-config completed, Kratos
// (native sidecar) running and ready, the app running and ready. Tests change it to describe
// other states.
func ReadyStatus() corev1.PodStatus {
	now := metav1.Now()
	return corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
		InitContainerStatuses: []corev1.ContainerStatus{
			{Name: inject.ContainerConfig, Image: testbed.InjectorImage, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}},
			{Name: inject.ContainerKratos, Image: testbed.KratosImage, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}},
		},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "app", Image: testbed.BusyboxImage, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}},
		},
	}
}

// Unmigrated makes a status say what a real kubelet reports for an injected pod whose database
// is not migrated: Kratos (a native sidecar) runs but does not listen, so its startup probe has
// not passed; the pod is still initializing (Pending), the app container waits.
func Unmigrated(s *corev1.PodStatus) {
	s.Phase = corev1.PodPending
	for i := range s.Conditions {
		if s.Conditions[i].Type == corev1.PodReady {
			s.Conditions[i].Status, s.Conditions[i].Reason = corev1.ConditionFalse, "ContainersNotReady"
		}
	}
	for i := range s.InitContainerStatuses {
		if st := &s.InitContainerStatuses[i]; st.Name == inject.ContainerKratos {
			st.Ready, st.Started = false, ptr(false)
		}
	}
	for i := range s.ContainerStatuses {
		st := &s.ContainerStatuses[i]
		st.Ready, st.State = false, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	}
}

func ptr[T any](v T) *T { return &v }

// RunPod creates pod on the kwok node and waits until kwok reports it Running and Ready.
func (c *Cluster) RunPod(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Spec.NodeName, pod.Spec.Tolerations = KwokNode, []corev1.Toleration{testbed.KwokToleration}
	ctx := Context(t)
	if _, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	got, err := testbed.WaitPod(ctx, c.Client, pod.Namespace, pod.Name, 30*time.Second, "Running and Ready", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && instance.IsReady(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// PodWithStatus creates pod on the plain node (nothing manages it) — or unscheduled when
// unscheduled is true — and writes its status through the status subresource.
func (c *Cluster) PodWithStatus(t testing.TB, pod *corev1.Pod, status corev1.PodStatus, unscheduled bool) *corev1.Pod {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Spec.NodeName, pod.Spec.Tolerations = PlainNode, nil
	if unscheduled {
		pod.Spec.NodeName = ""
	}
	ctx := Context(t)
	created, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return c.SetStatus(t, created, func(s *corev1.PodStatus) { *s = status })
}

// SetStatus rewrites the status of a pod through the status subresource (retrying on conflicts).
func (c *Cluster) SetStatus(t testing.TB, pod *corev1.Pod, mutate func(*corev1.PodStatus)) *corev1.Pod {
	t.Helper()
	ctx := Context(t)
	for i := 0; ; i++ {
		cur, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get pod %s/%s: %v", pod.Namespace, pod.Name, err)
		}
		mutate(&cur.Status)
		got, err := c.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return got
		}
		if !apierrors.IsConflict(err) || i > 10 {
			t.Fatalf("update status of pod %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	}
}

// Terminate deletes a pod on the plain node: with nobody to confirm the deletion, it stays,
// terminating (deletionTimestamp set), as a pod does during its grace period.
func (c *Cluster) Terminate(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	ctx := Context(t)
	if err := c.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	p, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("pod %s/%s is not terminating: %v", pod.Namespace, pod.Name, err)
	}
}

// Forward applies a kwok PortForward: the API server's port-forwards to port of pod reach addr
// (host:port) on this machine.
func (c *Cluster) Forward(t testing.TB, pod *corev1.Pod, port int, addr string) {
	t.Helper()
	host, p, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("address %q: want host:port", addr)
	}
	c.Apply(t, pod.Namespace, fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: PortForward
metadata: {name: %q, namespace: %q}
spec:
  forwards:
  - ports: [%d]
    target: {address: %q, port: %s}
`, pod.Name, pod.Namespace, port, host, p))
}

// ExecTarget is one entry of a kwok Exec: execs into these containers run as local processes
// in WorkDir with Env added to kwok's environment.
type ExecTarget struct {
	Containers []string
	WorkDir    string
	Env        map[string]string
}

// Exec applies a kwok Exec for pod.
func (c *Cluster) Exec(t testing.TB, pod *corev1.Pod, targets ...ExecTarget) {
	t.Helper()
	type env struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	type local struct {
		WorkDir string `json:"workDir,omitempty"`
		Envs    []env  `json:"envs,omitempty"`
	}
	type execTarget struct {
		Containers []string `json:"containers,omitempty"`
		Local      local    `json:"local"`
	}
	var execs []execTarget
	for _, tg := range targets {
		e := execTarget{Containers: tg.Containers, Local: local{WorkDir: tg.WorkDir}}
		for k, v := range tg.Env {
			e.Local.Envs = append(e.Local.Envs, env{k, v})
		}
		execs = append(execs, e)
	}
	obj := map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Exec",
		"metadata": map[string]any{"name": pod.Name, "namespace": pod.Namespace},
		"spec":     map[string]any{"execs": execs},
	}
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(t, pod.Namespace, string(data))
}

// Apply server-side applies a YAML (or JSON) stream.
func (c *Cluster) Apply(t testing.TB, ns, manifest string) {
	t.Helper()
	if err := c.CP.Apply(Context(t), ns, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

// AuditEvent is the part of an API server audit event the tests read.
type AuditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// String is "user verb URI -> code", for failure messages.
func (e AuditEvent) String() string {
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	return fmt.Sprintf("%s %s %s -> %d", e.User.Username, e.Verb, e.RequestURI, code)
}

// Query returns the parsed query of the request URI.
func (e AuditEvent) Query() url.Values {
	u, err := url.Parse(e.RequestURI)
	if err != nil {
		return nil
	}
	return u.Query()
}

// Audit returns the audited requests in namespace ns (every user), one per request (its last
// stage), in order.
func (c *Cluster) Audit(t testing.TB, ns string) []AuditEvent {
	t.Helper()
	f, err := os.Open(c.AuditLog)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var out []AuditEvent
	index := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit log: %v", err)
		}
		if e.ObjectRef == nil || e.ObjectRef.Namespace != ns {
			continue
		}
		if i, ok := index[e.AuditID]; ok {
			out[i] = e
			continue
		}
		index[e.AuditID] = len(out)
		out = append(out, e)
	}
	return out
}

func can(cs kubernetes.Interface, ns, user, verb, resource, sub string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Resource: resource, Subresource: sub,
		},
	}}
	got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return got.Status.Allowed, nil
}

// Context is a context for one test step: 60 s, cancelled at the end of the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ClosedAddr is a 127.0.0.1 address nothing listens on (for "connection refused" cases).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
