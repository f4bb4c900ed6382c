package cli

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// podStatus describes one pod; spec is the pod's parsed annotations (nil when they do not
// parse with this plugin's version).
func podStatus(p *corev1.Pod, spec *config.Spec) PodStatus {
	ps := PodStatus{Name: p.Name, Phase: string(p.Status.Phase), Created: p.CreationTimestamp,
		KratosImage: instance.KratosImage(p), Restarts: instance.Restarts(p)}
	if p.DeletionTimestamp != nil {
		ps.Phase = "Terminating"
	}
	if st, err := inject.ParseStatus(p.Annotations[inject.AnnotationStatus]); err == nil {
		ps.InjectorVersion, ps.SpecHash = st.Version, st.SpecHash
	}
	if spec != nil {
		ps.Migrate = spec.Migrate
	}
	ps.Ready = p.DeletionTimestamp == nil && instance.IsReady(p)
	if !ps.Ready {
		ps.Reason = instance.NotReadyReason(p)
	}
	return ps
}
