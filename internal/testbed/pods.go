package testbed

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// WaitPod polls a pod until cond returns true; on timeout the error is a report of the pod:
// phase, conditions, every container's state, the last lines of each container's log and the
// pod's recent events.
func WaitPod(ctx context.Context, c kubernetes.Interface, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	ctx2, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *corev1.Pod
	for {
		p, err := c.CoreV1().Pods(ns).Get(ctx2, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p, nil
			}
		}
		select {
		case <-ctx2.Done():
			return last, fmt.Errorf("pod %s/%s not %s after %s:\n%s", ns, name, what, timeout, PodReport(ctx, c, ns, name))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// WaitPodReady waits for the pod's Ready condition.
func WaitPodReady(ctx context.Context, c kubernetes.Interface, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	return WaitPod(ctx, c, ns, name, timeout, "Ready", instance.IsReady)
}

// PodReport describes why a pod is where it is, for failure messages.
func PodReport(ctx context.Context, c kubernetes.Interface, ns, name string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var b strings.Builder
	p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("  (get pod: %v)", err)
	}
	fmt.Fprintf(&b, "  phase %s on node %q\n", p.Status.Phase, p.Spec.NodeName)
	for _, cd := range p.Status.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s %s %s\n", cd.Type, cd.Status, cd.Reason, cd.Message)
	}
	all := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range all {
		fmt.Fprintf(&b, "  container %s: ready=%v restarts=%d %s\n", s.Name, s.Ready, s.RestartCount, stateString(s.State))
		if s.LastTerminationState.Terminated != nil {
			fmt.Fprintf(&b, "    last: %s\n", stateString(s.LastTerminationState))
		}
		tail := int64(15)
		logs, err := c.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: s.Name, TailLines: &tail}).DoRaw(ctx)
		if err == nil && len(logs) > 0 {
			for _, l := range strings.Split(strings.TrimRight(string(logs), "\n"), "\n") {
				fmt.Fprintf(&b, "    | %s\n", l)
			}
		}
	}
	evs, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
	if err == nil {
		sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
		items := evs.Items
		if len(items) > 15 {
			items = items[len(items)-15:]
		}
		for _, e := range items {
			fmt.Fprintf(&b, "  event %s %s: %s\n", e.Type, e.Reason, e.Message)
		}
	}
	return b.String()
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.Format(time.RFC3339)
	case s.Waiting != nil:
		return fmt.Sprintf("waiting %s %s", s.Waiting.Reason, s.Waiting.Message)
	case s.Terminated != nil:
		return fmt.Sprintf("terminated exit=%d %s %q", s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Message)
	}
	return "no state"
}

// PodView is a summary of a pod's state for polling loops.
type PodView struct {
	Running bool // phase Running, or Pending with the Kratos native sidecar running (unmigrated)
	Ready   bool
}

// View summarises a pod.
func View(p *corev1.Pod) *PodView {
	v := &PodView{Ready: instance.IsReady(p), Running: p.Status.Phase == corev1.PodRunning}
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "kratos" && s.State.Running != nil {
			v.Running = true
		}
	}
	return v
}
