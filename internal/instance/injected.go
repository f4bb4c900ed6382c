package instance

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// ReasonNotInjected is what the plugin says of a pod that carries the instance label but was
// not injected by kratos-injector (see Injected); status output and tests match on it.
const ReasonNotInjected = "not injected by kratos-injector: ignored"

// Injected reports whether p looks like a pod the injector injected, and when it does not, why:
// it must be opted in (inject.LabelInject "true", the label the webhook's objectSelector
// matches), carry a status annotation the injector wrote (inject.AnnotationStatus, read by
// inject.ParseStatus), and run the injected Kratos container (inject.ContainerKratos running
// `kratos serve`, as a native sidecar — an init container with restartPolicy Always — or as a
// regular container).
//
// The plugin hands passwords and recovery codes to the pod it picks, so it only ever picks pods
// that pass this check: the instance label alone is not enough. This is not a proof of origin
// (Kubernetes keeps none): whoever may create pods in the namespace can build one that passes,
// and whoever may patch pods can change a Kratos container's image. Those users are inside the
// trust boundary (docs/architecture.md, "Trust boundary").
func Injected(p *corev1.Pod) (bool, string) {
	if v := p.Labels[inject.LabelInject]; v != "true" {
		if v == "" {
			return false, fmt.Sprintf("not labelled %s=true", inject.LabelInject)
		}
		return false, fmt.Sprintf("label %s is %q, not \"true\"", inject.LabelInject, v)
	}
	st, ok := p.Annotations[inject.AnnotationStatus]
	if !ok {
		return false, fmt.Sprintf("no %s annotation", inject.AnnotationStatus)
	}
	if _, err := inject.ParseStatus(st); err != nil {
		return false, fmt.Sprintf("annotation %s: %v", inject.AnnotationStatus, err)
	}
	c := Container(p, inject.ContainerKratos)
	switch {
	case c == nil:
		return false, fmt.Sprintf("no %s container", inject.ContainerKratos)
	case isInitContainer(p, inject.ContainerKratos) && !isSidecar(p, inject.ContainerKratos):
		return false, fmt.Sprintf("init container %s is not a sidecar (restartPolicy Always)", inject.ContainerKratos)
	case !slices.Contains(append(slices.Clone(c.Command), c.Args...), "serve"):
		return false, fmt.Sprintf("container %s does not run `kratos serve`", inject.ContainerKratos)
	}
	return true, ""
}

// NotInjectedReason is how the plugin describes a pod Injected refused, why being its answer.
func NotInjectedReason(why string) string {
	return fmt.Sprintf("%s (%s)", ReasonNotInjected, why)
}

func isInitContainer(p *corev1.Pod, name string) bool {
	return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == name })
}
