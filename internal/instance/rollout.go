package instance

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Workload is a controller whose pods make up an instance: what `kubectl kratos restart`
// rolls.
type Workload struct {
	Kind      string // Deployment, StatefulSet or DaemonSet
	Namespace string
	Name      string
}

// String is kubectl's resource/name form, e.g. deployment.apps/web.
func (w Workload) String() string {
	switch w.Kind {
	case "Deployment":
		return "deployment.apps/" + w.Name
	case "StatefulSet":
		return "statefulset.apps/" + w.Name
	default:
		return "daemonset.apps/" + w.Name
	}
}

// Workloads resolves the pods to their workloads (a ReplicaSet to its Deployment), each once
// and sorted; unmanaged lists the pods that no restartable workload owns (bare pods, Jobs,
// ReplicaSets without a Deployment), with why.
func Workloads(ctx context.Context, cs kubernetes.Interface, pods []corev1.Pod) (workloads []Workload, unmanaged []string, err error) {
	seen := map[Workload]bool{}
	for i := range pods {
		p := &pods[i]
		ref := metav1.GetControllerOf(p)
		var w Workload
		switch {
		case ref == nil:
			unmanaged = append(unmanaged, fmt.Sprintf("pod %s has no controller: delete it to restart it", p.Name))
			continue
		case ref.Kind == "ReplicaSet":
			rs, err := cs.AppsV1().ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, APIError(err, "get", "replicasets", p.Namespace)
			}
			owner := metav1.GetControllerOf(rs)
			if owner == nil || owner.Kind != "Deployment" {
				unmanaged = append(unmanaged, fmt.Sprintf("pod %s belongs to ReplicaSet %s, which no Deployment manages: delete its pods to restart them", p.Name, rs.Name))
				continue
			}
			w = Workload{Kind: "Deployment", Namespace: p.Namespace, Name: owner.Name}
		case ref.Kind == "StatefulSet" || ref.Kind == "DaemonSet":
			w = Workload{Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name}
		default:
			unmanaged = append(unmanaged, fmt.Sprintf("pod %s belongs to %s %s, which cannot be restarted: delete the pod (or rerun the %s)", p.Name, ref.Kind, ref.Name, ref.Kind))
			continue
		}
		if !seen[w] {
			seen[w] = true
			workloads = append(workloads, w)
		}
	}
	sort.Slice(workloads, func(i, j int) bool { return workloads[i].String() < workloads[j].String() })
	return workloads, unmanaged, nil
}

// RestartedAtAnnotation is the pod template annotation kubectl rollout restart sets.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Restart rolls the workload as `kubectl rollout restart` does: a new restartedAt annotation
// on its pod template. dryRun asks the API server to validate the patch and persist nothing.
func Restart(ctx context.Context, cs kubernetes.Interface, w Workload, at time.Time, dryRun bool) error {
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, RestartedAtAnnotation, at.Format(time.RFC3339))
	opts := metav1.PatchOptions{FieldManager: "kubectl-kratos"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var err error
	switch w.Kind {
	case "Deployment":
		_, err = cs.AppsV1().Deployments(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
	case "StatefulSet":
		_, err = cs.AppsV1().StatefulSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
	case "DaemonSet":
		_, err = cs.AppsV1().DaemonSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
	default:
		return fmt.Errorf("cannot restart a %s", w.Kind)
	}
	if err != nil {
		return APIError(err, "patch", resource(w.Kind), w.Namespace)
	}
	return nil
}

func resource(kind string) string {
	switch kind {
	case "Deployment":
		return "deployments"
	case "StatefulSet":
		return "statefulsets"
	default:
		return "daemonsets"
	}
}

// RolloutStatus says whether the workload's rollout is complete, and if not, what it waits
// for, in the words of kubectl rollout status.
func RolloutStatus(ctx context.Context, cs kubernetes.Interface, w Workload) (done bool, msg string, err error) {
	switch w.Kind {
	case "Deployment":
		d, err := cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", APIError(err, "get", "deployments", w.Namespace)
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		switch {
		case d.Generation > st.ObservedGeneration:
			return false, "waiting for the rollout to be observed", nil
		case st.UpdatedReplicas < want:
			return false, fmt.Sprintf("%d out of %d new replicas have been updated", st.UpdatedReplicas, want), nil
		case st.Replicas > st.UpdatedReplicas:
			return false, fmt.Sprintf("%d old replicas are pending termination", st.Replicas-st.UpdatedReplicas), nil
		case st.AvailableReplicas < st.UpdatedReplicas:
			return false, fmt.Sprintf("%d of %d updated replicas are available", st.AvailableReplicas, st.UpdatedReplicas), nil
		}
		return true, "successfully rolled out", nil
	case "StatefulSet":
		s, err := cs.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", APIError(err, "get", "statefulsets", w.Namespace)
		}
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		st := s.Status
		switch {
		case s.Generation > st.ObservedGeneration:
			return false, "waiting for the rollout to be observed", nil
		case st.UpdatedReplicas < want || st.UpdateRevision != st.CurrentRevision && st.CurrentRevision != "":
			return false, fmt.Sprintf("%d out of %d new pods have been updated", st.UpdatedReplicas, want), nil
		case st.ReadyReplicas < want:
			return false, fmt.Sprintf("%d of %d pods are ready", st.ReadyReplicas, want), nil
		}
		return true, "successfully rolled out", nil
	default:
		ds, err := cs.AppsV1().DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", APIError(err, "get", "daemonsets", w.Namespace)
		}
		st := ds.Status
		switch {
		case ds.Generation > st.ObservedGeneration:
			return false, "waiting for the rollout to be observed", nil
		case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
			return false, fmt.Sprintf("%d out of %d new pods have been updated", st.UpdatedNumberScheduled, st.DesiredNumberScheduled), nil
		case st.NumberAvailable < st.DesiredNumberScheduled:
			return false, fmt.Sprintf("%d of %d updated pods are available", st.NumberAvailable, st.DesiredNumberScheduled), nil
		}
		return true, "successfully rolled out", nil
	}
}
