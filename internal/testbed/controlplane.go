package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceCIDR is the bed's service range. Nothing routes it (no kube-proxy by default): the real
// node's setup adds a blackhole route so a stray ClusterIP connection never leaves the machine.
const ServiceCIDR = "10.96.0.0/16"

// ControlPlaneOptions tunes the control plane.
type ControlPlaneOptions struct {
	// Controllers starts kube-controller-manager and kube-scheduler (Deployments → Pods, scheduling).
	Controllers bool
	// APIServerArgs are extra kube-apiserver flags.
	APIServerArgs []string
	// NodeNames are real-kubelet node names that get a node identity (token user system:node:<name>).
	NodeNames []string
}

// ControlPlane is etcd + kube-apiserver (+ kube-controller-manager + kube-scheduler).
type ControlPlane struct {
	URL        string // https://127.0.0.1:port
	CA         *CA
	CAFile     string
	Kubeconfig string // admin kubeconfig path
	Config     *rest.Config
	Client     kubernetes.Interface
	APIServer  *Proc
	// AuditLog is the API server's audit log (JSON lines): request bodies of every write, but
	// only metadata for Secrets, ConfigMaps and token reviews, so a secret value found in it
	// was written somewhere it should not be (a pod spec, an annotation, an event).
	AuditLog string
	tokens   map[string]string // user -> token
	dir      string
	// restart is what RestartAPIServer needs: how the API server was started.
	bed      *Bed
	apiBin   string
	apiArgs  []string
	restarts int
}

// auditPolicy records what a leak scan needs: Secret and ConfigMap (and token review) traffic
// as metadata only, every other write with its request body, reads not at all.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: [secrets, configmaps, serviceaccounts/token]
  - group: authentication.k8s.io
    resources: [tokenreviews]
- level: None
  verbs: [get, list, watch]
- level: Request
`

// Users with static tokens; "alice" has no group and no RBAC grants (for authorization tests).
var staticUsers = []struct{ name, groups string }{
	{"admin", "system:masters"},
	// With one shared credential (no per-controller ServiceAccounts) the controller manager
	// needs every controller's rights.
	{"system:kube-controller-manager", "system:masters"},
	{"system:kube-scheduler", ""},
	{"kwok", "system:masters"},
	{"alice", ""},
	{"bob", ""},
}

// StartControlPlane brings up etcd and kube-apiserver on 127.0.0.1 and free ports, and with
// opts.Controllers the controller manager and scheduler, then waits until the API is ready and
// the default ServiceAccount exists (so pods can be created).
func (b *Bed) StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	dir := b.Path("cp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	etcdBin, err := Tool("etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := Tool("kube-apiserver")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(5)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]

	etcd, err := b.Start("etcd", nil, etcdBin,
		"--name", "bed", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("bed=http://127.0.0.1:%d", etcdPeer),
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if err := etcd.WaitReady(60*time.Second, httpOK(fmt.Sprintf("http://127.0.0.1:%d/health", etcdClient), "", nil)); err != nil {
		return nil, err
	}

	ca, err := NewCA("kratos-injector-bed-ca")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{CA: ca, dir: dir, tokens: map[string]string{}, URL: fmt.Sprintf("https://127.0.0.1:%d", apiPort)}
	cp.CAFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(cp.CAFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := ca.WriteServing(filepath.Join(dir, "apiserver"), "kube-apiserver",
		"127.0.0.1", "10.96.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"); err != nil {
		return nil, err
	}
	if err := writeRSAKeyPair(filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")); err != nil {
		return nil, err
	}
	var tokens strings.Builder
	users := staticUsers
	for _, n := range opts.NodeNames {
		users = append(users, struct{ name, groups string }{"system:node:" + n, "system:nodes"})
	}
	for i, u := range users {
		t := randomToken()
		cp.tokens[u.name] = t
		fmt.Fprintf(&tokens, "%s,%s,u%d,%q\n", t, u.name, i, u.groups)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens.String()), 0o600); err != nil {
		return nil, err
	}

	cp.AuditLog = filepath.Join(dir, "audit.log")
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	args := []string{
		"--audit-log-path", cp.AuditLog, "--audit-policy-file", policy, "--audit-log-maxsize", "0",
		"--audit-log-format", "json",
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(apiPort),
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(dir, "apiserver"),
		"--tls-cert-file", filepath.Join(dir, "apiserver", "tls.crt"),
		"--tls-private-key-file", filepath.Join(dir, "apiserver", "tls.key"),
		"--client-ca-file", cp.CAFile,
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--kubelet-preferred-address-types", "InternalIP",
		// A webhook registered by service: is called at its pod's IP (no kube-proxy needed).
		"--enable-aggregator-routing=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--allow-privileged=true",
	}
	args = append(args, opts.APIServerArgs...)
	cp.bed, cp.apiBin, cp.apiArgs = b, apiBin, args
	api, err := b.Start("kube-apiserver", nil, apiBin, args...)
	if err != nil {
		return nil, err
	}
	cp.APIServer = api
	if err := api.WaitReady(120*time.Second, httpOK(cp.URL+"/readyz", cp.tokens["admin"], ca)); err != nil {
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := cp.WriteKubeconfig(cp.Kubeconfig, "admin"); err != nil {
		return nil, err
	}
	if cp.Config, err = clientcmd.BuildConfigFromFlags("", cp.Kubeconfig); err != nil {
		return nil, err
	}
	cp.Config.QPS, cp.Config.Burst = 200, 400
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return nil, err
	}

	if opts.Controllers {
		if err := b.startControllers(cp, kcmPort, schedPort); err != nil {
			return nil, err
		}
	} else {
		// Without the controller manager nobody creates the default ServiceAccount.
		_, err := cp.Client.CoreV1().ServiceAccounts("default").Create(context.Background(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create default ServiceAccount: %w", err)
		}
	}
	return cp, nil
}

func (b *Bed) startControllers(cp *ControlPlane, kcmPort, schedPort int) error {
	kcmBin, err := Tool("kube-controller-manager")
	if err != nil {
		return err
	}
	schedBin, err := Tool("kube-scheduler")
	if err != nil {
		return err
	}
	kcmKC := filepath.Join(cp.dir, "kcm.kubeconfig")
	schedKC := filepath.Join(cp.dir, "scheduler.kubeconfig")
	if err := cp.WriteKubeconfig(kcmKC, "system:kube-controller-manager"); err != nil {
		return err
	}
	if err := cp.WriteKubeconfig(schedKC, "system:kube-scheduler"); err != nil {
		return err
	}
	kcm, err := b.Start("kube-controller-manager", nil, kcmBin,
		"--kubeconfig", kcmKC, "--authentication-kubeconfig", kcmKC, "--authorization-kubeconfig", kcmKC,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort), "--leader-elect=false",
		"--service-account-private-key-file", filepath.Join(cp.dir, "sa.key"), "--root-ca-file", cp.CAFile,
		"--flex-volume-plugin-dir", filepath.Join(cp.dir, "kcm-flex"),
		"--use-service-account-credentials=false", "--controllers", "*",
		"--cluster-signing-duration", "24h")
	if err != nil {
		return err
	}
	sched, err := b.Start("kube-scheduler", nil, schedBin,
		"--kubeconfig", schedKC, "--authentication-kubeconfig", schedKC, "--authorization-kubeconfig", schedKC,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(schedPort), "--leader-elect=false")
	if err != nil {
		return err
	}
	if err := kcm.WaitReady(90*time.Second, httpOK(fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort), "", nil)); err != nil {
		return err
	}
	if err := sched.WaitReady(90*time.Second, httpOK(fmt.Sprintf("https://127.0.0.1:%d/healthz", schedPort), "", nil)); err != nil {
		return err
	}
	// The controller manager creates the default ServiceAccount and kube-root-ca.crt ConfigMap
	// that every pod needs.
	return kcm.WaitReady(90*time.Second, func(ctx context.Context) error {
		if _, err := cp.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := cp.Client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
}

// Token returns the static bearer token of a bed user.
func (cp *ControlPlane) Token(user string) string { return cp.tokens[user] }

// WriteKubeconfig writes a kubeconfig for one of the bed's static users.
func (cp *ControlPlane) WriteKubeconfig(path, user string) error {
	tok, ok := cp.tokens[user]
	if !ok {
		return fmt.Errorf("no bed user %q", user)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bed"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthority: cp.CAFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tok}
	cfg.Contexts["bed"] = &clientcmdapi.Context{Cluster: "bed", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "bed"
	return clientcmd.WriteToFile(*cfg, path)
}

// UserConfig returns a rest.Config acting as one of the bed's static users.
func (cp *ControlPlane) UserConfig(user string) *rest.Config {
	c := rest.CopyConfig(cp.Config)
	c.BearerToken = cp.tokens[user]
	return c
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// httpOK polls url for a 200; token and ca are optional.
func httpOK(url, token string, ca *CA) func(ctx context.Context) error {
	client := insecureClient()
	if ca != nil {
		client = caClient(ca.CertPEM)
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// RestartAPIServer stops the API server with sig and starts it again with the same flags, port
// and etcd, waiting until it is ready. SIGTERM is a graceful shutdown (in-flight requests and
// streams may finish); SIGKILL is a crash: every connection and stream breaks at once.
func (cp *ControlPlane) RestartAPIServer(sig syscall.Signal) error {
	cp.APIServer.StopSignal(sig)
	cp.APIServer.Stop()
	cp.restarts++
	api, err := cp.bed.Start(fmt.Sprintf("kube-apiserver-%d", cp.restarts), nil, cp.apiBin, cp.apiArgs...)
	if err != nil {
		return err
	}
	cp.APIServer = api
	return api.WaitReady(120*time.Second, httpOK(cp.URL+"/readyz", cp.tokens["admin"], cp.CA))
}
