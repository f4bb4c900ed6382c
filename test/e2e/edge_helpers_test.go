package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// exampleIngress reads one of the shipped Ingress examples (examples/ingress).
func exampleIngress(t *testing.T, file string) *networkingv1.Ingress {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ing, err := testbed.LoadIngress(filepath.Join(root, "examples", "ingress", file))
	if err != nil {
		t.Fatal(err)
	}
	return ing
}

// edgeInfo is the bed's edge as a browser sees it.
type edgeInfo struct {
	*testbed.Edge
	Roots *x509.CertPool
}

// Hosts is the browser's resolver: the Ingress's hosts on 443 go to the edge; Hydra's URLs
// (when given) to Hydra itself.
func (e *edgeInfo) Hosts(hydras ...*testbed.Hydra) map[string]string {
	m := map[string]string{}
	for _, h := range e.Edge.Hosts {
		m[h+":443"] = e.Addr
	}
	for _, h := range hydras {
		for _, u := range []string{h.PublicURL, h.AdminURL} {
			pu, _ := url.Parse(u)
			m[pu.Host] = pu.Host
		}
	}
	return m
}

// shopBehindEdge runs the injected Deployment "shop" of the shipped examples (one replica on the
// real node, the given annotations) with the shipped Service for its public API, and the bed's
// edge for ing in front of it, its upstream the Service's ready endpoints as ingress-nginx
// resolves them. It returns the edge and the pod.
func shopBehindEdge(t *testing.T, ctx context.Context, s *stack, n *testbed.Node, ns string, ing *networkingv1.Ingress, annotations map[string]string) (*edgeInfo, *corev1.Pod) {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := yaml.UnmarshalStrict(mustRead(t, filepath.Join(root, "examples", "ingress", "service.yaml")), &svc); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CP.Client.CoreV1().Services(ns).Create(ctx, &svc, createOpts); err != nil {
		t.Fatal(err)
	}
	dep := deployment("shop", 1, map[string]string{injectLabel: "true"}, annotations, realNodeSpec(n))
	if _, err := s.CP.Client.AppsV1().Deployments(ns).Create(ctx, dep, createOpts); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ctx, s, ns, "app=shop")
	ing = ing.DeepCopy()
	ing.Namespace = ns
	var backends []string
	deadline := time.Now().Add(time.Minute)
	for {
		backends, err = testbed.EdgeBackends(ctx, s.CP.Client, ing)
		if err == nil && len(backends) == 1 && backends[0] == fmt.Sprintf("%s:4433", pod.Status.PodIP) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Service's endpoints are %v (%v), want the pod %s:4433", backends, err, pod.Status.PodIP)
		}
		time.Sleep(200 * time.Millisecond)
	}
	e, err := s.Bed.StartEdge(ing, backends, s.CP.CA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.CAPEM)
	return &edgeInfo{Edge: e, Roots: roots}, pod
}
