package instance

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// Kratos reads its config once the render init container wrote it; a Secret or ConfigMap
// changed after that reaches Kratos only when the pod restarts (kubectl kratos restart). A
// pod is stale when one of its inputs was written after its config was rendered.

// RenderedAt is when the pod's kratos-config container last rendered successfully; zero if it
// has not (yet).
func RenderedAt(p *corev1.Pod) time.Time {
	st := ContainerStatus(p, inject.ContainerConfig)
	if st == nil {
		return time.Time{}
	}
	var at time.Time
	for _, t := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
		if t != nil && t.ExitCode == 0 && t.FinishedAt.After(at) {
			at = t.FinishedAt.Time
		}
	}
	return at
}

// LastWritten is when an object was last written, from its managed fields (each manager's
// last operation; second precision), else its creation.
func LastWritten(m *metav1.ObjectMeta) time.Time {
	at := m.CreationTimestamp.Time
	for _, f := range m.ManagedFields {
		if f.Time != nil && f.Time.After(at) {
			at = f.Time.Time
		}
	}
	return at
}

// InputReader reads the Secrets and ConfigMaps pods render from, each once.
type InputReader struct {
	CS    kubernetes.Interface
	cache map[string]inputResult
}

type inputResult struct {
	meta *metav1.ObjectMeta
	err  error
}

func (r *InputReader) get(ctx context.Context, kind, ns, name string) inputResult {
	if r.cache == nil {
		r.cache = map[string]inputResult{}
	}
	k := kind + "/" + ns + "/" + name
	if res, ok := r.cache[k]; ok {
		return res
	}
	var res inputResult
	if kind == "Secret" {
		// Metadata only would do, but a typed get is what RBAC's "get secrets" grants either way.
		s, err := r.CS.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			res.meta = &s.ObjectMeta
		}
		res.err = err
	} else {
		c, err := r.CS.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			res.meta = &c.ObjectMeta
		}
		res.err = err
	}
	r.cache[k] = res
	return res
}

// Stale lists the inputs of a rendered pod written after its render, as "Secret smtp" or
// "ConfigMap schemas"; unknown lists those it could not read (and why). A pod that has not
// rendered is never stale.
func (r *InputReader) Stale(ctx context.Context, p *corev1.Pod) (stale, unknown []string) {
	rendered := RenderedAt(p)
	if rendered.IsZero() {
		return nil, nil
	}
	spec, err := inject.ParseAnnotations(p.Annotations, "")
	if err != nil {
		return nil, nil
	}
	secrets, configMaps := spec.Inputs()
	check := func(kind string, names []string) {
		for _, n := range names {
			res := r.get(ctx, kind, p.Namespace, n)
			switch {
			case apierrors.IsNotFound(res.err):
				stale = append(stale, fmt.Sprintf("%s %s (deleted)", kind, n))
			case res.err != nil:
				unknown = append(unknown, fmt.Sprintf("%s %s (%s)", kind, n, apiReason(res.err)))
			case LastWritten(res.meta).Truncate(time.Second).After(rendered.Truncate(time.Second)):
				stale = append(stale, fmt.Sprintf("%s %s", kind, n))
			}
		}
	}
	check("Secret", secrets)
	check("ConfigMap", configMaps)
	return stale, unknown
}

func apiReason(err error) string {
	if apierrors.IsForbidden(err) {
		return "forbidden"
	}
	return err.Error()
}
