package inject

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Denial and skip reasons, the values of the reason label.
const (
	ReasonInvalidAnnotations = "invalid-annotations" // a setting is wrong
	ReasonConflict           = "conflict"            // the pod clashes with what would be injected
	ReasonBadRequest         = "bad-request"         // the request holds no decodable Pod
	ReasonInternal           = "internal"            // a bug: the injected pod did not serialize

	ReasonNotLabelled     = "not-labelled"
	ReasonAlreadyInjected = "already-injected"
	ReasonNotPodCreate    = "not-pod-create" // another kind or operation reached the webhook
)

// Counters on controller-runtime's registry, served by its metrics server next to the
// controller_runtime_webhook_* request metrics.
var (
	injectionsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kratos_injector_injections_total",
		Help: "Pods injected with Kratos.",
	})
	denialsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kratos_injector_denials_total",
		Help: "Admission requests denied, by reason.",
	}, []string{"reason"})
	skippedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kratos_injector_skipped_total",
		Help: "Admission requests allowed without a change, by reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(injectionsTotal, denialsTotal, skippedTotal)
	// Every series exists from the start, so rate() and alerts see zeros rather than gaps.
	for _, r := range []string{ReasonInvalidAnnotations, ReasonConflict, ReasonBadRequest, ReasonInternal} {
		denialsTotal.WithLabelValues(r)
	}
	for _, r := range []string{ReasonNotLabelled, ReasonAlreadyInjected, ReasonNotPodCreate} {
		skippedTotal.WithLabelValues(r)
	}
}
