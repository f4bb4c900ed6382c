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
	// Pods are sorted: not terminating first, then newest first, then by name.
	Pods []corev1.Pod
}

// Group groups pods by namespace and instance name, sorted by namespace then name.
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
		in.Pods = append(in.Pods, p)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Namespace != out[b].Namespace {
			return out[a].Namespace < out[b].Namespace
		}
		return out[a].Name < out[b].Name
	})
	for _, in := range out {
		sortPods(in.Pods)
	}
	return out
}

// Find lists the injected pods of sel's namespace (one API call) and returns the instance sel
// designates. Several instances without --instance or -l narrowing them to one are refused with
// their names.
func Find(ctx context.Context, cs kubernetes.Interface, sel Selector) (*Instance, error) {
	ns := sel.Namespace
	pods, err := List(ctx, cs, sel)
	if err != nil {
		return nil, err
	}
	instances := Group(pods)
	switch {
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
	instances := Group(pods)
	if len(instances) == 0 {
		return fmt.Sprintf("; there is no injected pod at all there: label a workload with %s=true", inject.LabelInject)
	}
	return "; instances there: " + strings.Join(names(instances), ", ")
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
