package instance

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// What NotReadyReason says of the injector's own failures; status output and tests match on
// them.
const (
	ReasonNotMigrated  = "database not migrated: run kubectl kratos migrate"
	ReasonRenderFailed = "render failed: "
)

// NotReadyReason says why an injected pod is not Ready, the injector's own failures first: the
// render init container's error line (a missing Secret or key), a failing migration, a
// crashing container with its last message, a Kratos waiting for `kubectl kratos migrate`;
// else the first thing the pod's status says blocks it, with the container's own message.
func NotReadyReason(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	if s := ContainerStatus(p, inject.ContainerConfig); s != nil {
		if t := failedRun(s); t != nil {
			msg := firstLine(t.Message)
			if msg == "" {
				msg = fmt.Sprintf("%s exited %d%s (%s)", inject.ContainerConfig, t.ExitCode, paren(t.Reason), logsHint(p, inject.ContainerConfig))
			}
			return ReasonRenderFailed + msg
		}
	}
	if s := ContainerStatus(p, inject.ContainerMigrate); s != nil {
		if t := failedRun(s); t != nil {
			return fmt.Sprintf("migration failed: %s exited %d%s (%s)",
				inject.ContainerMigrate, t.ExitCode, withColon(firstLine(t.Message)), logsHint(p, inject.ContainerMigrate))
		}
	}
	for s := range ContainerStatuses(p) {
		if w := s.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			msg := fmt.Sprintf("container %s crashing (CrashLoopBackOff, %d restarts)", s.Name, s.RestartCount)
			if t := s.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(": last exit %d%s%s", t.ExitCode, paren(t.Reason), withColon(firstLine(t.Message)))
			}
			return msg
		}
	}
	if s := ContainerStatus(p, inject.ContainerKratos); s != nil && s.State.Running != nil && !probePassed(s) && Migrate(p) == config.MigrateManual {
		return ReasonNotMigrated
	}
	return statusReason(p)
}

// statusReason reads from the pod's status the first thing that blocks it.
func statusReason(p *corev1.Pod) string {
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return fmt.Sprintf("pod %s%s", strings.ToLower(string(p.Status.Phase)), withMessage(p.Status.Reason, p.Status.Message))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled" + withMessage(c.Reason, c.Message)
		}
	}
	for i := range p.Status.InitContainerStatuses {
		s := &p.Status.InitContainerStatuses[i]
		if isSidecar(p, s.Name) {
			if r := containerProblem(p, "sidecar container", s); r != "" {
				return r
			}
			continue
		}
		if t := s.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		if r := containerProblem(p, "init container", s); r != "" {
			return r
		}
		return fmt.Sprintf("init container %s has not finished", s.Name)
	}
	for i := range p.Status.ContainerStatuses {
		if r := containerProblem(p, "container", &p.Status.ContainerStatuses[i]); r != "" {
			return r
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			return "not Ready" + withMessage(c.Reason, c.Message)
		}
	}
	if p.Status.Phase == corev1.PodPending {
		return "pending" + withMessage(p.Status.Reason, p.Status.Message)
	}
	return "not Ready"
}

// containerProblem describes a container that is waiting, has failed, or runs unready; "" when
// it is fine.
func containerProblem(p *corev1.Pod, kind string, s *corev1.ContainerStatus) string {
	last := ""
	if t := s.LastTerminationState.Terminated; t != nil {
		last = fmt.Sprintf("; last run exited %d%s", t.ExitCode, withMessage(t.Reason, t.Message))
	}
	switch {
	case s.State.Waiting != nil:
		w := s.State.Waiting
		return fmt.Sprintf("%s %s waiting%s%s", kind, s.Name, withMessage(w.Reason, w.Message), last)
	case s.State.Terminated != nil && (s.State.Terminated.ExitCode != 0 || kind != "init container"):
		t := s.State.Terminated
		return fmt.Sprintf("%s %s exited %d%s", kind, s.Name, t.ExitCode, withMessage(t.Reason, t.Message))
	case s.State.Running != nil && kind != "init container" && !s.Ready:
		msg := fmt.Sprintf("%s %s is running but not ready%s", kind, s.Name, last)
		if s.Name == inject.ContainerKratos {
			// The migrate mode is unknown here (or auto): say both ways out.
			msg += fmt.Sprintf(" (Kratos does not listen until its database is migrated: with migrate=manual, "+
				"run `kubectl kratos migrate`; else see `kubectl logs -n %s %s -c %s`)", p.Namespace, p.Name, inject.ContainerKratos)
		}
		return msg
	}
	return ""
}

// probePassed reports whether the container's startup probe passed (readiness when the
// kubelet does not say).
func probePassed(s *corev1.ContainerStatus) bool {
	if s.Started != nil {
		return *s.Started && s.Ready
	}
	return s.Ready
}

// failedRun returns the container's failed run: the current one, or the last one while it
// waits to restart or runs again.
func failedRun(s *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
		return t
	}
	if t := s.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 && s.State.Terminated == nil {
		return t
	}
	return nil
}

func logsHint(p *corev1.Pod, container string) string {
	return fmt.Sprintf("see `kubectl logs -n %s %s -c %s`", p.Namespace, p.Name, container)
}

// firstLine is the first non-empty line of a termination message (a failing process may log
// more than the one line the render container writes).
func firstLine(s string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func withMessage(reason, message string) string {
	message = strings.TrimSpace(message)
	switch {
	case reason != "" && message != "":
		return fmt.Sprintf(": %s: %s", reason, message)
	case reason != "":
		return ": " + reason
	case message != "":
		return ": " + message
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
