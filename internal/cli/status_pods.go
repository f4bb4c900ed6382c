package cli

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// Reasons `status` gives for an unready pod, beyond what instance.NotReadyReason says.
const (
	reasonNotMigrated = "database not migrated: run kubectl kratos migrate"
	reasonRender      = "render failed: "
)

// podStatus describes one pod; spec is the pod's parsed annotations (nil when they do not
// parse with this plugin's version).
func podStatus(p *corev1.Pod, spec *config.Spec) PodStatus {
	ps := PodStatus{Name: p.Name, Phase: string(p.Status.Phase), Created: p.CreationTimestamp}
	if p.DeletionTimestamp != nil {
		ps.Phase = "Terminating"
	}
	if st, err := inject.ParseStatus(p.Annotations[inject.AnnotationStatus]); err == nil {
		ps.InjectorVersion, ps.SpecHash = st.Version, st.SpecHash
	}
	if c := specContainer(p, inject.ContainerKratos); c != nil {
		ps.KratosImage = c.Image
	}
	if spec != nil {
		ps.Migrate = spec.Migrate
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range list {
			ps.Restarts += s.RestartCount
		}
	}
	ps.Ready = p.DeletionTimestamp == nil && podIsReady(p)
	if !ps.Ready {
		ps.Reason = notReadyReason(p, ps.Migrate)
	}
	return ps
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// notReadyReason says why an injected pod is not Ready, the injector's own failures first:
// the render init container's error line (a missing Secret or key), a failing migration, a
// crashing container with its last message, a Kratos waiting for `kubectl kratos migrate`;
// else what instance.NotReadyReason reads from the pod's status.
func notReadyReason(p *corev1.Pod, migrate string) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	if s := containerStatus(p, inject.ContainerConfig); s != nil {
		if t := failed(s); t != nil {
			msg := firstLine(t.Message)
			if msg == "" {
				msg = fmt.Sprintf("%s exited %d%s (see `kubectl logs -n %s %s -c %s`)", inject.ContainerConfig, t.ExitCode, paren(t.Reason), p.Namespace, p.Name, inject.ContainerConfig)
			}
			return reasonRender + msg
		}
	}
	if s := containerStatus(p, inject.ContainerMigrate); s != nil {
		if t := failed(s); t != nil {
			return fmt.Sprintf("migration failed: %s exited %d%s (see `kubectl logs -n %s %s -c %s`)",
				inject.ContainerMigrate, t.ExitCode, withColon(firstLine(t.Message)), p.Namespace, p.Name, inject.ContainerMigrate)
		}
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			s := &list[i]
			if w := s.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
				msg := fmt.Sprintf("container %s crashing (CrashLoopBackOff, %d restarts)", s.Name, s.RestartCount)
				if t := s.LastTerminationState.Terminated; t != nil {
					msg += fmt.Sprintf(": last exit %d%s%s", t.ExitCode, paren(t.Reason), withColon(firstLine(t.Message)))
				}
				return msg
			}
		}
	}
	if s := containerStatus(p, inject.ContainerKratos); s != nil && s.State.Running != nil && !probePassed(s) && migrate == config.MigrateManual {
		return reasonNotMigrated
	}
	return instance.NotReadyReason(p)
}

// probePassed reports whether the container's startup probe passed (readiness when the
// kubelet does not say).
func probePassed(s *corev1.ContainerStatus) bool {
	if s.Started != nil {
		return *s.Started && s.Ready
	}
	return s.Ready
}

// failed returns the container's failed run: the current one, or the last one while it waits
// to restart or runs again.
func failed(s *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
		return t
	}
	if t := s.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 && s.State.Terminated == nil {
		return t
	}
	return nil
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func specContainer(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// firstLine is the first non-empty line of a termination message (a failing process may log
// more than the one line the render container writes).
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func withColon(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}
