// Package target finds the injected Kratos instance a kubectl kratos command acts on and reaches
// it through the Kubernetes API server: a port-forward to the pod's admin port, or an exec into
// its Kratos container. Kubernetes RBAC on pods/portforward and pods/exec is thus the only door
// to the admin API.
package instance

import (
	"context"
	"errors"
	"fmt"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/kubernetes"
)

// Errors a caller can tell apart with errors.Is.
var (
	// ErrNoInstance: no injected pod matches.
	ErrNoInstance = errors.New("no Kratos instance")
	// ErrSeveralInstances: the namespace has several instances and none was picked.
	ErrSeveralInstances = errors.New("several Kratos instances")
	// ErrNotReady: the instance has no pod fit for the command.
	ErrNotReady = errors.New("no ready pod")
	// ErrForbidden: RBAC denied a call; the message says which permission is missing.
	ErrForbidden = errors.New("forbidden")
)

// Selector picks the instance.
type Selector struct {
	Namespace string
	// Instance is the value of inject.LabelInstance; empty: the only instance of the namespace.
	Instance string
	// LabelSelector further restricts the pods (kubectl -l syntax).
	LabelSelector string
}

// Instance is one injected Kratos instance: the pods that share an inject.LabelInstance value.
type Instance struct {
	Name      string
	Namespace string
	// Pods are sorted: not terminating first, then newest first, then by name.
	Pods []corev1.Pod
}

// Find lists the injected pods of the namespace (one API call) and returns the instance sel
// designates. Several instances without --instance or -l narrowing them to one are refused with
// their names.
func Find(ctx context.Context, cs kubernetes.Interface, sel Selector) (*Instance, error) {
	ns := sel.Namespace
	req, err := labels.NewRequirement(inject.LabelInstance, selection.Exists, nil)
	if sel.Instance != "" {
		req, err = labels.NewRequirement(inject.LabelInstance, selection.Equals, []string{sel.Instance})
	}
	if err != nil {
		return nil, fmt.Errorf("--instance %q: %w", sel.Instance, err)
	}
	ls := labels.NewSelector().Add(*req)
	if sel.LabelSelector != "" {
		extra, err := labels.Parse(sel.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("-l %q: %w", sel.LabelSelector, err)
		}
		reqs, _ := extra.Requirements()
		ls = ls.Add(reqs...)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: ls.String()})
	if err != nil {
		return nil, explainAPIError(err, "list", "pods", ns)
	}

	byInstance := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		name := p.Labels[inject.LabelInstance]
		byInstance[name] = append(byInstance[name], p)
	}
	names := make([]string, 0, len(byInstance))
	for n := range byInstance {
		names = append(names, n)
	}
	sort.Strings(names)

	switch {
	case len(names) == 0 && sel.Instance == "" && sel.LabelSelector == "":
		return nil, errorf(ErrNoInstance, "no pod labelled %s in namespace %s: label a workload with %s=true "+
			"(or pick another namespace with -n)", inject.LabelInstance, ns, inject.LabelInject)
	case len(names) == 0:
		return nil, errorf(ErrNoInstance, "no injected pod matches %s in namespace %s%s",
			describeSelector(sel), ns, otherInstances(ctx, cs, ns))
	case len(names) > 1:
		return nil, errorf(ErrSeveralInstances, "several Kratos instances in namespace %s (%s): pick one with --instance NAME",
			ns, strings.Join(names, ", "))
	}
	in := &Instance{Name: names[0], Namespace: ns, Pods: byInstance[names[0]]}
	sortPods(in.Pods)
	return in, nil
}

func describeSelector(sel Selector) string {
	var parts []string
	if sel.Instance != "" {
		parts = append(parts, fmt.Sprintf("--instance %s", sel.Instance))
	}
	if sel.LabelSelector != "" {
		parts = append(parts, fmt.Sprintf("-l %s", sel.LabelSelector))
	}
	return strings.Join(parts, " and ")
}

// otherInstances names the instances of the namespace, to help after a selection matched none.
// It costs a second list call, on the error path only.
func otherInstances(ctx context.Context, cs kubernetes.Interface, ns string) string {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: inject.LabelInstance})
	if err != nil {
		return ""
	}
	set := map[string]bool{}
	for _, p := range pods.Items {
		set[p.Labels[inject.LabelInstance]] = true
	}
	if len(set) == 0 {
		return fmt.Sprintf("; there is no injected pod at all there: label a workload with %s=true", inject.LabelInject)
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return "; instances there: " + strings.Join(names, ", ")
}

func sortPods(pods []corev1.Pod) {
	sort.SliceStable(pods, func(a, b int) bool {
		pa, pb := &pods[a], &pods[b]
		if ta, tb := pa.DeletionTimestamp != nil, pb.DeletionTimestamp != nil; ta != tb {
			return !ta
		}
		if !pa.CreationTimestamp.Equal(&pb.CreationTimestamp) {
			return pb.CreationTimestamp.Before(&pa.CreationTimestamp)
		}
		return pa.Name < pb.Name
	})
}

// ReadyPod returns a pod of the instance that is not being deleted and is Ready, or, failing
// that, one whose Kratos container is ready (an unready app container must not lock the
// operator out of the admin API). Otherwise it returns an ErrNotReady error that says, pod by
// pod, why none is.
func (in *Instance) ReadyPod() (*corev1.Pod, error) {
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.DeletionTimestamp == nil && podReady(p) {
			return p, nil
		}
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		if s := kratosStatus(p); p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && s != nil && s.Ready {
			return p, nil
		}
	}
	return nil, in.notReadyError("Ready pod", NotReadyReason)
}

// KratosRunningPod returns a pod whose Kratos container is running, Ready or not: migrations run
// there, and Kratos v1.3 stays unready until its database is migrated. Such a pod may still be
// Pending: a native sidecar whose startup probe has not passed keeps the pod initializing.
func (in *Instance) KratosRunningPod() (*corev1.Pod, error) {
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.DeletionTimestamp != nil || (p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending) {
			continue
		}
		if s := kratosStatus(p); s != nil && s.State.Running != nil {
			return p, nil
		}
	}
	return nil, in.notReadyError("pod with a running "+inject.ContainerKratos+" container", NotReadyReason)
}

func (in *Instance) notReadyError(want string, why func(*corev1.Pod) string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s in namespace %s has no %s:", in.Name, in.Namespace, want)
	for i := range in.Pods {
		p := &in.Pods[i]
		fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, why(p))
	}
	return &Error{Kind: ErrNotReady, Message: b.String()}
}

// Error is a failure to reach the instance, of one of the kinds above (errors.Is) with a
// message that says what to do.
type Error struct {
	Kind    error
	Message string
	Cause   error
}

func (e *Error) Error() string        { return e.Message }
func (e *Error) Is(target error) bool { return target == e.Kind }
func (e *Error) Unwrap() error        { return e.Cause }

func errorf(kind error, format string, a ...interface{}) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, a...)}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kratosStatus finds the Kratos container's status: an init container when it runs as a native
// sidecar, a regular container otherwise.
func kratosStatus(p *corev1.Pod) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == inject.ContainerKratos {
				return &list[i]
			}
		}
	}
	return nil
}

func isSidecar(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	return false
}

// NotReadyReason explains, from the pod's status, why it is not Ready: the first thing that
// blocks it, with the container's own message (the render init container writes one line naming
// the missing Secret or key).
func NotReadyReason(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
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
			msg += fmt.Sprintf(" (Kratos does not listen until its database is migrated: with migrate=manual, "+
				"run `kubectl kratos migrate`; else see `kubectl logs -n %s %s -c %s`)", p.Namespace, p.Name, inject.ContainerKratos)
		}
		return msg
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

// explainAPIError turns an RBAC denial into the permission to ask for.
func explainAPIError(err error, verb, resource, ns string) error {
	if apierrors.IsForbidden(err) {
		return forbidden(verb, resource, ns, err)
	}
	return fmt.Errorf("%s %s in namespace %s: %w", verb, resource, ns, err)
}

func forbidden(verb, resource, ns string, err error) error {
	return &Error{Kind: ErrForbidden, Cause: err, Message: fmt.Sprintf(
		"you need %q on %q in namespace %s (check with `kubectl auth can-i %s %s -n %s`); the API server said: %v",
		verb, resource, ns, verb, resource, ns, err)}
}
