package harness

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// DefaultReview is the review every server is sent: the CREATE of a Deployment's pod (owner a
// ReplicaSet) as the API server sends it to a webhook, after the ServiceAccount admission
// plugin: one app container with 20 environment variables, probes and the projected
// service-account token volume; annotations for Postgres, SMTP, two OIDC providers, features
// and the sender. It is kept indented in testdata and sent compacted (about 4.7 KB).
//
//go:embed testdata/pod-create-review.json
var DefaultReview []byte

// review is a parsed review, ready to send.
type review struct {
	body []byte // compact JSON, as sent
	uid  string
	pod  []byte // the request's object
}

func parseReview(raw []byte) (*review, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(buf.Bytes(), &ar); err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	if ar.Request == nil || ar.Request.UID == "" || len(ar.Request.Object.Raw) == 0 {
		return nil, errors.New("review: no request, uid or object")
	}
	return &review{body: buf.Bytes(), uid: string(ar.Request.UID), pod: ar.Request.Object.Raw}, nil
}

// validator judges one response body of a server.
type validator func(body []byte) error

// validatorFor is what a response of the server must be: an allowed review for the baselines
// (the bare server's is fixed, so its uid is not the request's); for the injector, an allowed
// review for this request whose JSON patch, applied to the pod, injects Kratos.
func validatorFor(server string, rv *review) validator {
	switch server {
	case Bare:
		return func(body []byte) error { _, err := allowed(body, ""); return err }
	case AllowAll:
		return func(body []byte) error { _, err := allowed(body, rv.uid); return err }
	default:
		return func(body []byte) error { return injected(body, rv) }
	}
}

func allowed(body []byte, uid string) (*admissionv1.AdmissionResponse, error) {
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, fmt.Errorf("response is not a review: %w", err)
	}
	r := ar.Response
	switch {
	case ar.APIVersion != "admission.k8s.io/v1" || ar.Kind != "AdmissionReview":
		return nil, fmt.Errorf("response is %s %s, not an admission.k8s.io/v1 AdmissionReview", ar.APIVersion, ar.Kind)
	case r == nil:
		return nil, errors.New("review without response")
	case uid != "" && string(r.UID) != uid:
		return nil, fmt.Errorf("response uid %q, want the request's %q", r.UID, uid)
	case !r.Allowed:
		msg := ""
		if r.Result != nil {
			msg = r.Result.Message
		}
		return nil, fmt.Errorf("denied: %s", msg)
	}
	return r, nil
}

func injected(body []byte, rv *review) error {
	r, err := allowed(body, rv.uid)
	if err != nil {
		return err
	}
	if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch || len(r.Patch) == 0 {
		return errors.New("allowed without a JSON patch")
	}
	patch, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	out, err := patch.Apply(rv.pod)
	if err != nil {
		return fmt.Errorf("patch does not apply to the pod: %w", err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(out, &pod); err != nil {
		return fmt.Errorf("patched pod: %w", err)
	}
	has := func(cs []corev1.Container, name string) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	}
	switch {
	case !strings.HasPrefix(pod.Annotations[inject.AnnotationStatus], "injected"):
		return fmt.Errorf("patched pod's %s is %q", inject.AnnotationStatus, pod.Annotations[inject.AnnotationStatus])
	case pod.Labels[inject.LabelInstance] == "":
		return fmt.Errorf("patched pod has no %s label", inject.LabelInstance)
	case !has(pod.Spec.InitContainers, "kratos-config"):
		return errors.New("patched pod has no kratos-config init container")
	case !has(pod.Spec.InitContainers, "kratos") && !has(pod.Spec.Containers, "kratos"):
		return errors.New("patched pod has no kratos container")
	}
	return nil
}

// checker checks every response of a run. Identical requests get identical answers, so only
// a body that differs from the last valid one is decoded and judged: every response is
// checked at the cost of a comparison.
type checker struct {
	validate validator
	valid    []byte
}

func (c *checker) check(code uint16, errMsg string, body []byte) error {
	switch {
	case errMsg != "":
		return errors.New(errMsg)
	case code != 200:
		return fmt.Errorf("HTTP %d", code)
	case c.valid != nil && bytes.Equal(body, c.valid):
		return nil
	}
	if err := c.validate(body); err != nil {
		return err
	}
	c.valid = bytes.Clone(body)
	return nil
}
