package instance

import (
	"fmt"
	"iter"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// ReadyPod returns an injected pod of the instance (never an ignored one: see Injected) that
// is not being deleted and is Ready, or, failing that, one whose Kratos container is ready (an
// unready app container must not lock the operator out of the admin API). Otherwise it returns
// an ErrNotReady error that says, pod by pod, why none is.
func (in *Instance) ReadyPod() (*corev1.Pod, error) {
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.DeletionTimestamp == nil && IsReady(p) {
			return p, nil
		}
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		if s := ContainerStatus(p, inject.ContainerKratos); p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && s != nil && s.Ready {
			return p, nil
		}
	}
	return nil, in.notReadyError("Ready pod")
}

// KratosRunningPod returns an injected pod whose Kratos container is running, Ready or not:
// migrations run there, and Kratos v1.3 stays unready until its database is migrated. Such a
// pod may still be Pending: a native sidecar whose startup probe has not passed keeps the pod
// initializing.
func (in *Instance) KratosRunningPod() (*corev1.Pod, error) {
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.DeletionTimestamp != nil || (p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending) {
			continue
		}
		if s := ContainerStatus(p, inject.ContainerKratos); s != nil && s.State.Running != nil {
			return p, nil
		}
	}
	return nil, in.notReadyError("pod with a running " + inject.ContainerKratos + " container")
}

func (in *Instance) notReadyError(want string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s in namespace %s has no %s:", in.Name, in.Namespace, want)
	for i := range in.Pods {
		p := &in.Pods[i]
		fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, NotReadyReason(p))
	}
	for _, ig := range in.Ignored {
		fmt.Fprintf(&b, "\n  pod %s: %s", ig.Pod.Name, NotInjectedReason(ig.Why))
	}
	return &Error{Kind: ErrNotReady, Message: b.String()}
}

// IsReady reports whether the pod's Ready condition is true.
func IsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ContainerStatuses yields the statuses of the pod's init containers, then of its containers:
// the Kratos container is an init container when it runs as a native sidecar, a regular one
// otherwise, and every reader must look in both.
func ContainerStatuses(p *corev1.Pod) iter.Seq[*corev1.ContainerStatus] {
	return func(yield func(*corev1.ContainerStatus) bool) {
		for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for i := range list {
				if !yield(&list[i]) {
					return
				}
			}
		}
	}
}

// ContainerStatus is the status of the named container, init or regular; nil when the pod has
// none (yet).
func ContainerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for s := range ContainerStatuses(p) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Container is the named container of the pod's spec, init or regular; nil when there is none.
func Container(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// Restarts is the sum of the restart counts of the pod's containers, init ones included.
func Restarts(p *corev1.Pod) int32 {
	var n int32
	for s := range ContainerStatuses(p) {
		n += s.RestartCount
	}
	return n
}

// KratosImage is the image of the pod's Kratos container, "" when it has none.
func KratosImage(p *corev1.Pod) string {
	if c := Container(p, inject.ContainerKratos); c != nil {
		return c.Image
	}
	return ""
}

// ConfigPath is the config file the pod's Kratos runs with (its -c/--config argument), the
// rendered config's default path otherwise.
func ConfigPath(p *corev1.Pod) string {
	if c := Container(p, inject.ContainerKratos); c != nil {
		argv := append(append([]string{}, c.Command...), c.Args...)
		for i, a := range argv {
			switch {
			case (a == "-c" || a == "--config") && i+1 < len(argv):
				return argv[i+1]
			case strings.HasPrefix(a, "--config="):
				return strings.TrimPrefix(a, "--config=")
			case strings.HasPrefix(a, "-c="):
				return strings.TrimPrefix(a, "-c=")
			}
		}
	}
	return path.Join(config.DefaultConfigDir, config.ConfigFile)
}

// Migrate is the pod's migrate mode (config.MigrateAuto or config.MigrateManual) from its
// annotations, "" when they do not parse with this version (injected by another).
func Migrate(p *corev1.Pod) string {
	spec, err := inject.ParseAnnotations(p.Annotations, "")
	if err != nil {
		return ""
	}
	return spec.Migrate
}

func isSidecar(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	return false
}
