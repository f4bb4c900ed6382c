package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kwok runs kwok, which makes nodes annotated kwok.x-k8s.io/node=fake Ready and their pods Running
// without running anything: for scale tests. It never manages the real node.
type Kwok struct {
	Proc *Proc
	cp   *ControlPlane
}

// KwokNodeAnnotation marks the nodes kwok manages (and the taint their pods must tolerate).
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// StartKwok installs kwok's CRDs (taken from its module by hack/tools.sh) and starts kwok with
// its "fast" node and pod stages.
func (b *Bed) StartKwok(cp *ControlPlane) (*Kwok, error) {
	bin, err := Tool("kwok")
	if err != nil {
		return nil, err
	}
	assets := filepath.Join(ToolsDir(), "kwok-assets")
	crds, err := filepath.Glob(filepath.Join(assets, "crd", "*.yaml"))
	if err != nil || len(crds) == 0 {
		return nil, fmt.Errorf("kwok CRDs not found in %s: run `make tools`", assets)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, f := range crds {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := cp.Apply(ctx, "", data); err != nil {
			return nil, fmt.Errorf("kwok CRDs: %w", err)
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageAllNodes: false
  manageNodesWithAnnotationSelector: %s=fake
  nodeIP: 127.0.0.1
  nodePort: %d
  serverAddress: 127.0.0.1:%d
  cidr: 10.244.0.0/16
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 4
  podPlayStageParallelism: 8
  nodePlayStageParallelism: 4
  enablePodsOnNodeSyncStreamWatch: true
  enableDebuggingHandlers: true
  enableCRDs: [Exec, ClusterExec, PortForward, ClusterPortForward, Logs, ClusterLogs]
`, KwokNodeAnnotation, port, port)
	stages, _ := filepath.Glob(filepath.Join(assets, "stage", "*.yaml"))
	if len(stages) == 0 {
		return nil, fmt.Errorf("kwok stages not found in %s: run `make tools`", assets)
	}
	var sb strings.Builder
	sb.WriteString(cfg)
	for _, s := range stages {
		data, err := os.ReadFile(s)
		if err != nil {
			return nil, err
		}
		sb.WriteString("---\n")
		sb.Write(data)
		sb.WriteString("\n")
	}
	cfgPath := b.Path("kwok", "kwok.yaml")
	if err := os.WriteFile(cfgPath, []byte(sb.String()), 0o644); err != nil {
		return nil, err
	}
	kc := b.Path("kwok", "kubeconfig")
	if err := cp.WriteKubeconfig(kc, "kwok"); err != nil {
		return nil, err
	}
	p, err := b.Start("kwok", nil, bin, "--kubeconfig", kc, "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(60*time.Second, func(ctx context.Context) error {
		if strings.Contains(p.Tail(200), "level=ERROR") && strings.Contains(p.Tail(200), "failed") {
			return fmt.Errorf("kwok reported errors")
		}
		return tcpOpen(ctx, fmt.Sprintf("127.0.0.1:%d", port))
	}); err != nil {
		return nil, err
	}
	return &Kwok{Proc: p, cp: cp}, nil
}

// AddNode registers a fake node kwok manages and waits until it is Ready. Pods reach it only
// with a toleration of the kwok taint (KwokToleration), so they never land there by accident.
func (k *Kwok) AddNode(ctx context.Context, name string) (*corev1.Node, error) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: KwokNodeAnnotation, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("1000")},
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("1000")},
		},
	}
	_, err := k.cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create kwok node %s: %w", name, err)
	}
	var got *corev1.Node
	err = k.Proc.WaitReady(60*time.Second, func(ctx context.Context) error {
		n, err := k.cp.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				got = n
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready", name)
	})
	return got, err
}

// KwokToleration lets a pod be scheduled on kwok's fake nodes.
var KwokToleration = corev1.Toleration{Key: KwokNodeAnnotation, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
