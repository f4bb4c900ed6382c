package inject

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sjson "sigs.k8s.io/json"
)

// jsonPatchType is shared by every response; nothing writes through the pointer.
var jsonPatchType = admissionv1.PatchTypeJSONPatch

// Handler is the mutating admission handler for pods. It makes no API call: everything it
// needs is in the request, so it is as available as the webhook process itself.
type Handler struct {
	injector *Injector

	// Resolved once: a labelled counter lookup per request would hash the label values.
	deniedInvalid, deniedConflict, deniedBadRequest, deniedInternal prometheus.Counter
	skippedNotLabelled, skippedInjected, skippedNotPodCreate        prometheus.Counter
}

var _ admission.Handler = (*Handler)(nil)

// NewHandler returns a Handler injecting with opts.
func NewHandler(opts Options) *Handler {
	return &Handler{
		injector:            NewInjector(opts),
		deniedInvalid:       denialsTotal.WithLabelValues(ReasonInvalidAnnotations),
		deniedConflict:      denialsTotal.WithLabelValues(ReasonConflict),
		deniedBadRequest:    denialsTotal.WithLabelValues(ReasonBadRequest),
		deniedInternal:      denialsTotal.WithLabelValues(ReasonInternal),
		skippedNotLabelled:  skippedTotal.WithLabelValues(ReasonNotLabelled),
		skippedInjected:     skippedTotal.WithLabelValues(ReasonAlreadyInjected),
		skippedNotPodCreate: skippedTotal.WithLabelValues(ReasonNotPodCreate),
	}
}

// Handle injects Kratos into a pod being created, or denies it with every problem named.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		// Only a misconfigured webhook sends these; blocking them would be worse than ignoring.
		h.skippedNotPodCreate.Inc()
		return admission.Allowed("kratos-injector only mutates pod creation")
	}
	var pod *corev1.Pod
	var err error
	if a, ok := ctx.Value(admittedKey{}).(*admittedPod); ok { // decoded with the review (Webhook)
		pod, err = a.checkedPod()
	} else {
		pod, err = decodePod(req.Object.Raw)
	}
	if err != nil {
		h.deniedBadRequest.Inc()
		return admission.Errored(http.StatusBadRequest, err)
	}
	return h.handlePod(ctx, pod)
}

// handlePod is Handle for the decoded pod.
func (h *Handler) handlePod(ctx context.Context, pod *corev1.Pod) admission.Response {
	switch SkipReason(pod) {
	case ReasonNotLabelled:
		h.skippedNotLabelled.Inc()
		return admission.Allowed("not labelled " + LabelInject + "=true")
	case ReasonAlreadyInjected:
		h.skippedInjected.Inc()
		return admission.Allowed("already injected")
	}

	log := logf.FromContext(ctx)
	res, err := h.injector.inject(pod, true) // res.Pod is only read, to write the patch
	if err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) {
			if inv.AnnotationProblems() {
				h.deniedInvalid.Inc()
			} else {
				h.deniedConflict.Inc()
			}
			log.Info("denied", "pod", podName(pod), "problems", err.Error())
			return admission.Denied(err.Error())
		}
		h.deniedInternal.Inc()
		log.Error(err, "injection failed", "pod", podName(pod))
		return admission.Errored(http.StatusInternalServerError, err)
	}
	patch, err := patchWith(pod, res.Pod, res.parsed)
	if err != nil {
		h.deniedInternal.Inc()
		log.Error(err, "injection failed", "pod", podName(pod))
		return admission.Errored(http.StatusInternalServerError, err)
	}
	resp := admission.Allowed("")
	resp.Patch, resp.PatchType = patch, &jsonPatchType
	injectionsTotal.Inc()
	if l := log.V(1); l.Enabled() {
		l.Info("injected", "pod", podName(pod), "instance", res.Pod.Labels[LabelInstance], "status", res.Pod.Annotations[AnnotationStatus])
	}
	return resp.WithWarnings(res.Warnings...)
}

// decodePod reads the part of the request's pod that the injection reads (admittedPod) as
// the API machinery's JSON serializer does (case-sensitive, integers kept as int64) but in one
// pass: admission.Decoder's universal deserializer parses the document twice (once for
// apiVersion and kind). The request's kind was checked already; the object's is checked here.
// The JSON is checked whole, but the types of fields the injection does not read are not: the
// API server sends the pod it decoded, and validates the patched pod after admission.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("decode pod: the request holds no object")
	}
	var a admittedPod
	if err := sjson.UnmarshalCaseSensitivePreserveInts(raw, &a); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	return a.checkedPod()
}

// checkedPod is a.pod() when a is a v1 Pod.
func (a *admittedPod) checkedPod() (*corev1.Pod, error) {
	if a.Kind != "Pod" || a.APIVersion != "v1" {
		return nil, fmt.Errorf("decode pod: the object is %s %s, not v1 Pod", quote(a.APIVersion), quote(a.Kind))
	}
	return a.pod(), nil
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName
}
