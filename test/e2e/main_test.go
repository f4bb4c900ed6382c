// Package e2e holds the end-to-end tests. They run against real components started by package
// bed: a control plane with controllers, kwok nodes, PostgreSQL, Mailpit and Ory Kratos. Nothing
// here skips: a missing component is a failure that says how to build it (`make tools`).
package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kratos-injector/kratos-injector/test/e2e/bed"
)

// stack is the bed shared by the tests of this package: starting a control plane costs seconds,
// so each test works in its own namespace of one cluster instead.
type stack struct {
	Bed  *bed.Bed
	CP   *bed.ControlPlane
	Kwok *bed.Kwok
	// KwokNode is a fake node for pods that need not run.
	KwokNode string
}

var (
	sharedBed  *bed.Bed
	bedOnce    sync.Once
	bedErr     error
	clusterMu  sync.Mutex
	clusterSt  *stack
	clusterErr error
	pgOnce     sync.Once
	pg         *bed.Postgres
	pgErr      error
	mailOnce   sync.Once
	mail       *bed.Mailpit
	mailErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedBed != nil {
		sharedBed.Close()
	}
	os.Exit(code)
}

// theBed creates the shared bed and its host network (the real node's bridge, on which Postgres
// and Mailpit also listen so pods can reach them).
func theBed(t testing.TB) *bed.Bed {
	t.Helper()
	bedOnce.Do(func() {
		sharedBed, bedErr = bed.New("")
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
	network  *bed.Network
	nodeMu   sync.Mutex
	realNode *bed.Node
	nodeErr  error
)

// node returns the shared real node (kubelet + containerd), starting it on first use.
func node(t testing.TB) (*stack, *bed.Node) {
	t.Helper()
	s := cluster(t)
	nodeMu.Lock()
	defer nodeMu.Unlock()
	if realNode == nil && nodeErr == nil {
		start := time.Now()
		var webhook string
		webhook, nodeErr = bed.ProjectBin("webhook")
		if nodeErr == nil {
			realNode, nodeErr = s.Bed.StartNode(s.CP, network, bed.NodeOptions{Name: realNodeNames[0], WebhookBinary: webhook})
		}
		if nodeErr == nil {
			t.Logf("real node %s Ready in %s", realNode.Name, time.Since(start).Round(time.Millisecond))
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
	}
	if clusterErr != nil {
		// A bed that failed once is not retried: every test reports the first failure.
		t.Fatalf("test bed: %v", clusterErr)
	}
	return clusterSt
}

func startCluster(t testing.TB, b *bed.Bed) (*stack, error) {
	start := time.Now()
	cp, err := b.StartControlPlane(bed.ControlPlaneOptions{Controllers: true, NodeNames: realNodeNames})
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

func postgres(t testing.TB) *bed.Postgres {
	t.Helper()
	b := theBed(t)
	pgOnce.Do(func() { pg, pgErr = b.StartPostgres(postgresOptions()) })
	if pgErr != nil {
		t.Fatalf("postgres: %v", pgErr)
	}
	return pg
}

func mailpit(t testing.TB) *bed.Mailpit {
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
func postgresOptions() bed.PostgresOptions {
	return bed.PostgresOptions{ExtraListen: []string{network.Gateway}, ExtraCIDRs: []string{bed.BridgeCIDR}}
}
func mailpitOptions() bed.MailpitOptions { return bed.MailpitOptions{SMTPListen: network.Gateway} }

// namespace creates a fresh namespace for one test.
func namespace(t testing.TB, s *stack, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
	if _, err := s.CP.Client.CoreV1().Namespaces().Create(context.Background(), nsObj(ns), createOpts); err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	return ns
}
