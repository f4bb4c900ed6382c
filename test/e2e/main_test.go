package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// stack is the bed shared by the tests of this package: starting a control plane costs seconds,
// so each test works in its own namespace of one cluster instead.
type stack struct {
	Bed  *testbed.Bed
	CP   *testbed.ControlPlane
	Kwok *testbed.Kwok
	// KwokNode is a fake node for pods that need not run.
	KwokNode string
}

var (
	sharedBed  *testbed.Bed
	bedOnce    sync.Once
	bedErr     error
	clusterMu  sync.Mutex
	clusterSt  *stack
	clusterErr error
	pgOnce     sync.Once
	pg         *testbed.Postgres
	pgErr      error
	mailOnce   sync.Once
	mail       *testbed.Mailpit
	mailErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedBed != nil {
		var roots []string
		if clusterSt != nil {
			roots = []string{sharedBed.Path("logs"), clusterSt.CP.AuditLog, sharedBed.Path("leakscan")}
		}
		if !leakScan(roots) && code == 0 {
			code = 1
		}
		sharedBed.Close()
	}
	os.Exit(code)
}

// theBed creates the shared bed and its host network (the real node's bridge, on which Postgres
// and Mailpit also listen so pods can reach them).
func theBed(t testing.TB) *testbed.Bed {
	t.Helper()
	bedOnce.Do(func() {
		sharedBed, bedErr = testbed.New("")
		if bedErr == nil {
			network, bedErr = sharedBed.SetupNetwork()
		}
	})
	if bedErr != nil {
		t.Fatalf("bed: %v", bedErr)
	}
	return sharedBed
}

var (
	network  *testbed.Network
	nodeMu   sync.Mutex
	realNode *testbed.Node
	nodeErr  error
)

// node returns the shared real node (kubelet + containerd), starting it on first use.
func node(t testing.TB) (*stack, *testbed.Node) {
	t.Helper()
	s := cluster(t)
	nodeMu.Lock()
	defer nodeMu.Unlock()
	if realNode == nil && nodeErr == nil {
		start := time.Now()
		var webhook string
		webhook, nodeErr = testbed.ProjectBin("webhook")
		if nodeErr == nil {
			realNode, nodeErr = s.Bed.StartNode(s.CP, network, testbed.NodeOptions{Name: realNodeNames[0], WebhookBinary: webhook})
		}
		if nodeErr == nil {
			t.Logf("real node %s Ready in %s", realNode.Name, time.Since(start).Round(time.Millisecond))
			podLogs = archivePodLogs(realNode.PodLogsDir(), s.Bed.Path("leakscan", "pod-logs"))
		}
	}
	if nodeErr != nil {
		t.Fatalf("real node: %v", nodeErr)
	}
	return s, realNode
}

// cluster returns the shared control plane (with controller manager and scheduler) and a
// kwok node, starting them on first use.
func cluster(t testing.TB) *stack {
	t.Helper()
	b := theBed(t)
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if clusterSt == nil && clusterErr == nil {
		clusterSt, clusterErr = startCluster(t, b)
		if clusterErr == nil {
			leakWatchOf(clusterSt)
		}
	}
	if clusterErr != nil {
		// A bed that failed once is not retried: every test reports the first failure.
		t.Fatalf("test bed: %v", clusterErr)
	}
	return clusterSt
}

func startCluster(t testing.TB, b *testbed.Bed) (*stack, error) {
	start := time.Now()
	cp, err := b.StartControlPlane(testbed.ControlPlaneOptions{Controllers: true, NodeNames: realNodeNames})
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	kw, err := b.StartKwok(cp)
	if err != nil {
		return nil, fmt.Errorf("kwok: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kw.AddNode(ctx, "kwok-0"); err != nil {
		return nil, fmt.Errorf("kwok node: %w", err)
	}
	t.Logf("cluster up in %s (kubeconfig %s)", time.Since(start).Round(time.Millisecond), cp.Kubeconfig)
	return &stack{Bed: b, CP: cp, Kwok: kw, KwokNode: "kwok-0"}, nil
}

// realNodeNames are the real kubelet nodes the control plane gives an identity to.
var realNodeNames = []string{"bed-node"}

func postgres(t testing.TB) *testbed.Postgres {
	t.Helper()
	b := theBed(t)
	pgOnce.Do(func() { pg, pgErr = b.StartPostgres(postgresOptions()) })
	if pgErr != nil {
		t.Fatalf("postgres: %v", pgErr)
	}
	return pg
}

func mailpit(t testing.TB) *testbed.Mailpit {
	t.Helper()
	b := theBed(t)
	mailOnce.Do(func() { mail, mailErr = b.StartMailpit(mailpitOptions()) })
	if mailErr != nil {
		t.Fatalf("mailpit: %v", mailErr)
	}
	return mail
}

// postgresOptions and mailpitOptions are where the real node (when present) adds its bridge
// address so pods can reach the servers.
func postgresOptions() testbed.PostgresOptions {
	return testbed.PostgresOptions{ExtraListen: []string{network.Gateway}, ExtraCIDRs: []string{testbed.BridgeCIDR}}
}
func mailpitOptions() testbed.MailpitOptions {
	return testbed.MailpitOptions{SMTPListen: network.Gateway}
}

// namespace creates a fresh namespace for one test, deleted when the test ends: the real node
// has two cores, and the CPU requests of the pods earlier tests left behind would leave none for
// later ones. (The leak scan has seen every pod and Event by then: it watches as they come.)
func namespace(t testing.TB, s *stack, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
	if _, err := s.CP.Client.CoreV1().Namespaces().Create(context.Background(), nsObj(ns), createOpts); err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		if err := s.CP.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
			t.Logf("delete namespace %s: %v", ns, err)
		}
	})
	return ns
}
