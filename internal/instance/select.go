package instance

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// Selector picks the pods of instances: those labelled with an instance name, in a namespace
// (or every namespace), optionally of one instance and narrowed further by a label selector.
type Selector struct {
	// Namespace is the namespace to look in; "" (metav1.NamespaceAll) is every namespace.
	Namespace string
	// Instance is the value of inject.LabelInstance; empty: any instance.
	Instance string
	// LabelSelector further restricts the pods (kubectl -l syntax).
	LabelSelector string
}

// Labels is the label selector of the pods sel picks: the instance label (any value, or
// Instance), and the requirements of LabelSelector.
func (sel Selector) Labels() (labels.Selector, error) {
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
	return ls, nil
}

// List lists the pods sel picks, in one API call.
func List(ctx context.Context, cs kubernetes.Interface, sel Selector) ([]corev1.Pod, error) {
	ls, err := sel.Labels()
	if err != nil {
		return nil, err
	}
	pods, err := cs.CoreV1().Pods(sel.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ls.String()})
	if err != nil {
		return nil, APIError(err, "list", "pods", sel.Namespace)
	}
	return pods.Items, nil
}

// Instance is one injected Kratos instance: the pods that share an inject.LabelInstance value
// in one namespace.
type Instance struct {
	Name      string
	Namespace string
	// Pods are the pods the injector injected (see Injected), the only ones the plugin ever
	// reaches; sorted: not terminating first, then newest first, then by name.
	Pods []corev1.Pod
	// Ignored are the pods that carry the instance label but fail Injected, in the same order:
	// status shows them, nothing else uses them.
	Ignored []IgnoredPod
}

// IgnoredPod is a pod with the instance label that the injector did not inject.
type IgnoredPod struct {
	Pod corev1.Pod
	// Why is Injected's answer (e.g. "no kratos-injector.io/status annotation").
	Why string
}

// Group groups pods by namespace and instance name, sorted by namespace then name, and parts
// each instance's pods into the injected ones and the ignored ones (Injected). An instance may
// have ignored pods only.
func Group(pods []corev1.Pod) []*Instance {
	type key struct{ ns, name string }
	byKey := map[key]*Instance{}
	var out []*Instance
	for _, p := range pods {
		k := key{p.Namespace, p.Labels[inject.LabelInstance]}
		in, ok := byKey[k]
		if !ok {
			in = &Instance{Name: k.name, Namespace: k.ns}
			byKey[k] = in
			out = append(out, in)
		}
		if ok, why := Injected(&p); ok {
			in.Pods = append(in.Pods, p)
		} else {
			in.Ignored = append(in.Ignored, IgnoredPod{Pod: p, Why: why})
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Namespace != out[b].Namespace {
			return out[a].Namespace < out[b].Namespace
		}
		return out[a].Name < out[b].Name
	})
	for _, in := range out {
		sortPods(in.Pods)
		sort.SliceStable(in.Ignored, func(a, b int) bool { return podBefore(&in.Ignored[a].Pod, &in.Ignored[b].Pod) })
	}
	return out
}

// injectedOnly keeps the instances that have at least one injected pod: a pod that merely
// carries the instance label neither makes an instance nor makes the choice ambiguous.
func injectedOnly(instances []*Instance) []*Instance {
	var out []*Instance
	for _, in := range instances {
		if len(in.Pods) > 0 {
			out = append(out, in)
		}
	}
	return out
}

// Find lists the labelled pods of sel's namespace (one API call) and returns the instance sel
// designates, made of the pods the injector injected (Injected); a pod that only carries the
// label is never part of it. Several instances without --instance or -l narrowing them to one
// are refused with their names.
func Find(ctx context.Context, cs kubernetes.Interface, sel Selector) (*Instance, error) {
	ns := sel.Namespace
	pods, err := List(ctx, cs, sel)
	if err != nil {
		return nil, err
	}
	all := Group(pods)
	instances := injectedOnly(all)
	switch {
	case len(instances) == 0 && len(all) > 0:
		return nil, errorf(ErrNoInstance, "no pod injected by kratos-injector in namespace %s%s: %s; label a workload's pod "+
			"template with %s=true and let the webhook inject it", ns, selectorSuffix(sel), describeIgnored(all), inject.LabelInject)
	case len(instances) == 0 && sel.Instance == "" && sel.LabelSelector == "":
		return nil, errorf(ErrNoInstance, "no pod labelled %s in namespace %s: label a workload with %s=true "+
			"(or pick another namespace with -n)", inject.LabelInstance, ns, inject.LabelInject)
	case len(instances) == 0:
		return nil, errorf(ErrNoInstance, "no injected pod matches %s in namespace %s%s",
			describeSelector(sel), ns, otherInstances(ctx, cs, ns))
	case len(instances) > 1:
		return nil, errorf(ErrSeveralInstances, "several Kratos instances in namespace %s (%s): pick one with --instance NAME",
			ns, strings.Join(names(instances), ", "))
	}
	return instances[0], nil
}

// describeIgnored says, pod by pod, why the labelled pods of instances were not taken.
func describeIgnored(instances []*Instance) string {
	var parts []string
	for _, in := range instances {
		for _, ig := range in.Ignored {
			parts = append(parts, fmt.Sprintf("pod %s carries %s=%s but was %s", ig.Pod.Name,
				inject.LabelInstance, in.Name, NotInjectedReason(ig.Why)))
		}
	}
	return strings.Join(parts, "; ")
}

func selectorSuffix(sel Selector) string {
	if d := describeSelector(sel); d != "" {
		return " matching " + d
	}
	return ""
}

func names(instances []*Instance) []string {
	out := make([]string, len(instances))
	for i, in := range instances {
		out[i] = in.Name
	}
	return out
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
	pods, err := List(ctx, cs, Selector{Namespace: ns})
	if err != nil {
		return ""
	}
	instances := injectedOnly(Group(pods))
	if len(instances) == 0 {
		return fmt.Sprintf("; there is no injected pod at all there: label a workload with %s=true", inject.LabelInject)
	}
	return "; instances there: " + strings.Join(names(instances), ", ")
}

func sortPods(pods []corev1.Pod) {
	sort.SliceStable(pods, func(a, b int) bool { return podBefore(&pods[a], &pods[b]) })
}

// podBefore is the plugin's preference: not terminating first, then newest first, then by name.
func podBefore(pa, pb *corev1.Pod) bool {
	if ta, tb := pa.DeletionTimestamp != nil, pb.DeletionTimestamp != nil; ta != tb {
		return !ta
	}
	if !pa.CreationTimestamp.Equal(&pb.CreationTimestamp) {
		return pb.CreationTimestamp.Before(&pa.CreationTimestamp)
	}
	return pa.Name < pb.Name
}
