package testbed

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node is a real node: containerd + runc + a kubelet registered to the bed's control plane.
// Pods on it really run (init containers, native sidecars, probes, exec, port-forward).
type Node struct {
	Name       string
	IP         string // the bridge gateway: the kubelet's address and where pods reach host services
	Containerd *Proc
	Kubelet    *Proc
	socket     string
	ctr        string
	dir        string
}

// PodLogsDir is where the kubelet writes the containers' logs.
func (n *Node) PodLogsDir() string { return filepath.Join(n.dir, "pod-logs") }

// NodeOptions configures the real node.
type NodeOptions struct {
	Name string // must be one of ControlPlaneOptions.NodeNames
	// WebhookBinary is the project's static webhook binary, packed as InjectorImage.
	WebhookBinary string
}

// StartNode builds and imports the images, starts containerd with its own config, root, state
// and socket inside the bed, and a kubelet as node opts.Name; it waits for the node to be Ready.
// Teardown (at Close) removes pods' tasks, mounts, cgroups and the fixed host paths.
func (b *Bed) StartNode(cp *ControlPlane, nw *Network, opts NodeOptions) (*Node, error) {
	containerd, err := HostTool("containerd", "/usr/bin/containerd")
	if err != nil {
		return nil, err
	}
	ctr, err := HostTool("ctr", "/usr/bin/ctr")
	if err != nil {
		return nil, err
	}
	kubelet, err := Tool("kubelet")
	if err != nil {
		return nil, err
	}
	tars, err := buildImages(opts.WebhookBinary)
	if err != nil {
		return nil, fmt.Errorf("node images: %w", err)
	}
	dir := b.Path("node")
	n := &Node{Name: opts.Name, IP: nw.Gateway, dir: dir, ctr: ctr, socket: filepath.Join(dir, "containerd", "containerd.sock")}
	for _, d := range []string{"containerd", "cni/net.d", "kubelet", "kubelet-plugins", "pod-logs", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	b.Defer(n.cleanupHost) // runs after the processes below are stopped (cleanups run newest first)

	if err := os.WriteFile(filepath.Join(dir, "etc", "containerd.toml"), []byte(containerdConfig(dir)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "net.d", "10-bed.conflist"), []byte(cniConfig(dir)), 0o644); err != nil {
		return nil, err
	}
	n.Containerd, err = b.Start("containerd", nil, containerd, "--config", filepath.Join(dir, "etc", "containerd.toml"))
	if err != nil {
		return nil, err
	}
	b.Defer(n.removeTasks) // before containerd stops: shims exit when their tasks are gone
	if err := n.Containerd.WaitReady(60*time.Second, func(ctx context.Context) error {
		_, err := output(ctr, "-a", n.socket, "version")
		return err
	}); err != nil {
		return nil, err
	}
	for _, t := range tars {
		if out, err := output(ctr, "-a", n.socket, "-n", "k8s.io", "images", "import", "--no-unpack=false", t); err != nil {
			return nil, fmt.Errorf("import %s: %w\n%s", filepath.Base(t), err, out)
		}
	}

	kc := filepath.Join(dir, "kubelet.kubeconfig")
	if err := cp.WriteKubeconfig(kc, "system:node:"+opts.Name); err != nil {
		return nil, err
	}
	healthz, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "kubelet.yaml"), []byte(kubeletConfig(dir, n, healthz)), 0o644); err != nil {
		return nil, err
	}
	n.Kubelet, err = b.Start("kubelet", nil, kubelet,
		"--config", filepath.Join(dir, "etc", "kubelet.yaml"), "--kubeconfig", kc,
		"--root-dir", filepath.Join(dir, "kubelet"), "--cert-dir", filepath.Join(dir, "kubelet", "pki"),
		"--node-ip", n.IP, "--hostname-override", opts.Name, "-v", "1")
	if err != nil {
		return nil, err
	}
	if err := n.Kubelet.WaitReady(120*time.Second, func(ctx context.Context) error {
		node, err := cp.Client.CoreV1().Nodes().Get(ctx, opts.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s: %s: %s", opts.Name, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition", opts.Name)
	}); err != nil {
		return nil, err
	}
	return n, nil
}

// removeTasks kills and removes every container task of the node's containerd, so the shims
// (children of our containerd, not of the test) exit and release their mounts.
func (n *Node) removeTasks() {
	if n.Containerd == nil || n.Containerd.Exited() {
		return
	}
	if n.Kubelet != nil {
		n.Kubelet.Stop() // else it restarts what we remove
	}
	out, err := output(n.ctr, "-a", n.socket, "-n", "k8s.io", "tasks", "ls", "-q")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		_, _ = output(n.ctr, "-a", n.socket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range strings.Fields(out) {
		for i := 0; i < 50; i++ {
			if _, err := output(n.ctr, "-a", n.socket, "-n", "k8s.io", "tasks", "rm", "-f", id); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if out, err := output(n.ctr, "-a", n.socket, "-n", "k8s.io", "containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = output(n.ctr, "-a", n.socket, "-n", "k8s.io", "containers", "rm", id)
		}
	}
}

// cleanupHost unmounts what the node mounted under the bed, removes the cgroups the kubelet and
// containerd created, and the fixed host paths they use.
func (n *Node) cleanupHost() {
	mounts := mountsUnder(n.dir)
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := run("umount", m); err != nil {
			_ = run("umount", "-l", m)
		}
	}
	for _, pattern := range []string{"/sys/fs/cgroup/*/kubepods", "/sys/fs/cgroup/*/k8s.io", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/k8s.io"} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			removeCgroupTree(d)
		}
	}
	for _, p := range []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/var/lib/cni/results",
		"/var/lib/cni/networks/bed", "/run/containerd/s", "/usr/libexec/kubernetes/kubelet-plugins"} {
		_ = os.RemoveAll(p)
	}
}

func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 1 && (fields[1] == dir || strings.HasPrefix(fields[1], dir+"/")) {
			out = append(out, fields[1])
		}
	}
	return out
}

// removeCgroupTree removes a cgroup directory depth-first (only empty cgroups can be removed).
func removeCgroupTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
}

func containerdConfig(dir string) string {
	return fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs","io.containerd.snapshotter.v1.btrfs","io.containerd.snapshotter.v1.devmapper","io.containerd.snapshotter.v1.zfs","io.containerd.tracing.processor.v1.otlp","io.containerd.internal.v1.tracing"]

[grpc]
  address = "%[1]s/containerd/containerd.sock"
[ttrpc]
  address = "%[1]s/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[2]s"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # This VM's root lacks CAP_SYS_RESOURCE: a negative oom_score_adj fails every sandbox with EPERM.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "%[1]s/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni/net.d"
    max_conf_num = 1
`, dir, PauseImage)
}

func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "bed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "%s/cni/ipam",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, BridgeName, dir, BridgeCIDR, BridgeGateway)
}

func kubeletConfig(dir string, n *Node, healthz int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[2]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
cgroupDriver: cgroupfs
# This VM has cgroup v1 only; 1.35+ refuses it unless told otherwise.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%[1]s/containerd/containerd.sock
imageServiceEndpoint: unix://%[1]s/containerd/containerd.sock
# Reachable only on the bed's bridge inside this machine; the API server is its only client.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
staticPodPath: ""
resolvConf: %[1]s/etc/resolv.conf
clusterDomain: cluster.local
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
serializeImagePulls: false
registerNode: true
localStorageCapacityIsolation: true
volumePluginDir: %[1]s/kubelet-plugins
podLogsDir: %[1]s/pod-logs
`, dir, n.IP, healthz)
}
