package inject

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// maxReviewBytes is controller-runtime's limit on a review's body (admission/http.go).
const maxReviewBytes = 7 << 20

// Webhook serves admission reviews over HTTP for a Handler, answering exactly what
// controller-runtime's admission.Webhook answers (same status, headers and body, byte for
// byte: TestWebhookServesAsControllerRuntime, FuzzWebhookServesAsControllerRuntime), at less
// cost for the reviews an API server sends:
//
//   - the review and its pod are decoded in one pass: admission.Webhook decodes the review
//     twice (once for apiVersion and kind, then whole, copying the object), and the handler
//     then decoded the object a third time;
//   - the request's logger gets its values (object, namespace, user...) only when something is
//     logged: zap encodes them as soon as they are added, which admission.Webhook did for every
//     request although nothing is logged for an injection at the default verbosity.
//
// Anything but a plain v1 or v1beta1 AdmissionReview JSON object (kind, apiVersion and request
// members only, the request's fields of the right types) is handed to admission.Webhook, which
// then answers or refuses it as it always did.
type Webhook struct {
	handler *Handler
	hook    *admission.Webhook

	logOnce sync.Once
	log     logr.Logger // admission.Webhook's own: logf.Log.WithName("admission")
}

var _ http.Handler = (*Webhook)(nil)

// NewWebhook returns the webhook serving h.
func NewWebhook(h *Handler) *Webhook {
	return &Webhook{handler: h, hook: &admission.Webhook{Handler: h, LogConstructor: lazyLogConstructor}}
}

// admittedRequest is an AdmissionRequest whose object is decoded as the pod the injection
// reads (it shadows AdmissionRequest.Object, which stays empty).
type admittedRequest struct {
	admissionv1.AdmissionRequest
	Object *admittedPod `json:"object,omitempty"`
}

// admittedKey carries, in the context of Handler.Handle, the pod the Webhook decoded with the
// review, so that the handler does not decode it again from the (then empty) request object.
type admittedKey struct{}

func (wh *Webhook) logger() logr.Logger {
	wh.logOnce.Do(func() { wh.log = logf.Log.WithName("admission") })
	return wh.log
}

func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		wh.hook.ServeHTTP(w, r)
		return
	}
	defer r.Body.Close()
	limited := &io.LimitedReader{R: r.Body, N: maxReviewBytes}
	bodyBuf := getBuffer()
	defer putBuffer(bodyBuf) // nothing decoded refers to the body: strings and raw values are copies
	body, readErr := readAll(limited, r.ContentLength, *bodyBuf)
	*bodyBuf = body
	var ar *admittedRequest
	var gvk schema.GroupVersionKind
	if readErr == nil && limited.N > 0 && r.Header.Get("Content-Type") == "application/json" {
		ar, gvk = decodeReview(body)
	}
	if ar == nil {
		// admission.Webhook reads the same body (and the same read error, or the rest of a
		// body over the limit) and answers as it would have.
		rest := r.Body
		if readErr != nil {
			rest = io.NopCloser(errReader{readErr})
		}
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), rest), r.Body}
		wh.hook.ServeHTTP(w, r)
		return
	}
	req := admission.Request{AdmissionRequest: ar.AdmissionRequest}
	lazyLogConstructor(wh.logger(), &req).V(5).Info("received request")
	ctx := context.WithValue(r.Context(), admittedKey{}, ar.Object)
	resp := wh.hook.Handle(ctx, req)

	// admission.Webhook's writeResponseTyped and writeAdmissionResponse.
	review := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	review.SetGroupVersionKind(gvk)
	var err error
	outBuf := getBuffer()
	defer putBuffer(outBuf)
	if out, ok := appendInjection((*outBuf)[:0], &review); ok {
		*outBuf = out
		_, err = w.Write(out)
	} else {
		err = json.NewEncoder(w).Encode(review)
	}
	releasePatch(resp.Patch) // written: the handler's patch is no one else's
	if err != nil {
		wh.logger().Error(err, "unable to encode and write the response")
		serverError := admission.Errored(http.StatusInternalServerError, err)
		if err := json.NewEncoder(w).Encode(admissionv1.AdmissionReview{Response: &serverError.AdmissionResponse}); err != nil {
			wh.logger().Error(err, "still unable to encode and write the InternalServerError response")
		}
		return
	}
	if log := wh.logger(); log.V(5).Enabled() {
		res := review.Response
		if res.Result != nil {
			log = log.WithValues("code", res.Result.Code, "reason", res.Result.Reason, "message", res.Result.Message)
		}
		log.V(5).Info("wrote response", "requestID", res.UID, "allowed", res.Allowed)
	}
}

// decodeReview decodes body when it is a v1 or v1beta1 AdmissionReview (they have the same
// fields) that parseReview reads, whose request holds an object. It returns nil for anything
// else, even what admission.Webhook would accept: then admission.Webhook decodes it. Within
// those bounds, its result is what admission.Webhook decodes: its universal deserializer reads
// apiVersion and kind with encoding/json, case-insensitively (here no other member can match
// them), then the review with sigs.k8s.io/json's UnmarshalCaseSensitivePreserveInts, which
// parseRequest follows.
func decodeReview(body []byte) (*admittedRequest, schema.GroupVersionKind) {
	apiVersion, kind, ar, ok := parseReview(body)
	if !ok || ar.Object == nil || kind != "AdmissionReview" ||
		apiVersion != admissionv1.SchemeGroupVersion.String() && apiVersion != "admission.k8s.io/v1beta1" {
		return nil, schema.GroupVersionKind{}
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, schema.GroupVersionKind{}
	}
	return ar, gv.WithKind(kind)
}

// buffers are the bodies of requests and responses, reused: a review's are a few kilobytes.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func getBuffer() *[]byte { return buffers.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 { // not the rare huge one
		*b = (*b)[:0]
		buffers.Put(b)
	}
}

// readAll is io.ReadAll into b, first grown to the body's declared length (the API server sends
// it), rather than growing from 512 bytes and copying along.
func readAll(r io.Reader, length int64, b []byte) ([]byte, error) {
	b = b[:0]
	if length > 0 && length < maxReviewBytes {
		b = slices.Grow(b, int(length)+1) // and the EOF
	} else {
		b = slices.Grow(b, 512)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF { //nolint:errorlint // io.ReadAll's test: a wrapped EOF is an error there too
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type readCloser struct {
	io.Reader
	io.Closer
}

// lazyLogConstructor is admission.DefaultLogConstructor with the request's values added to the
// logger only when it logs (or is extended).
func lazyLogConstructor(base logr.Logger, req *admission.Request) logr.Logger {
	if req == nil || base.GetSink() == nil {
		return base
	}
	return logr.New(&lazySink{base: base, req: req})
}

// lazySink is the sink of admission.DefaultLogConstructor(base, req), built on first use.
type lazySink struct {
	base  logr.Logger
	req   *admission.Request
	depth int
}

// sink is the sink with the request's values, for a caller extra frames further from the
// logging call than the lazySink's caller would be.
func (s *lazySink) sink(extra int) logr.LogSink {
	l := admission.DefaultLogConstructor(s.base, s.req).GetSink()
	if cd, ok := l.(logr.CallDepthLogSink); ok && s.depth+extra != 0 {
		l = cd.WithCallDepth(s.depth + extra)
	}
	return l
}

func (s *lazySink) Init(logr.RuntimeInfo) {}

func (s *lazySink) Enabled(level int) bool { return s.base.GetSink().Enabled(level) }

// Info and Error add a frame (their own) between the logging call and the sink.
func (s *lazySink) Info(level int, msg string, kv ...any) { s.sink(1).Info(level, msg, kv...) }

func (s *lazySink) Error(err error, msg string, kv ...any) { s.sink(1).Error(err, msg, kv...) }

func (s *lazySink) WithValues(kv ...any) logr.LogSink {
	if len(kv) == 0 { // logf.FromContext adds none
		return s
	}
	return s.sink(0).WithValues(kv...)
}

func (s *lazySink) WithName(name string) logr.LogSink { return s.sink(0).WithName(name) }

func (s *lazySink) WithCallDepth(depth int) logr.LogSink {
	c := *s
	c.depth += depth
	return &c
}

// appendInjection appends to b what json.Encoder writes for review when its response is
// allowed with a patch, status code 200 and nothing else but warnings, as every injection's is
// (TestAppendInjection); ok is false for any other review, which json.Encoder then writes.
// Encoding by reflection, with the patch in base64, was a tenth of a review's CPU.
func appendInjection(b []byte, review *admissionv1.AdmissionReview) (_ []byte, ok bool) {
	r := review.Response
	if review.Request != nil || r == nil || !r.Allowed || r.Result == nil || *r.Result != (metav1.Status{Code: http.StatusOK}) ||
		len(r.Patch) == 0 || r.PatchType == nil || r.AuditAnnotations != nil {
		return b, false
	}
	b = append(b, '{')
	if review.Kind != "" {
		b = append(b, `"kind":`...)
		b = appendJSONString(b, review.Kind)
		b = append(b, ',')
	}
	if review.APIVersion != "" {
		b = append(b, `"apiVersion":`...)
		b = appendJSONString(b, review.APIVersion)
		b = append(b, ',')
	}
	b = append(b, `"response":{"uid":`...)
	b = appendJSONString(b, string(r.UID))
	b = append(b, `,"allowed":true,"status":{"metadata":{},"code":200},"patch":"`...)
	b = base64.StdEncoding.AppendEncode(b, r.Patch)
	b = append(b, `","patchType":`...)
	b = appendJSONString(b, string(*r.PatchType))
	if len(r.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range r.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...), true
}

// appendJSONString appends s as encoding/json writes it: as it is, quoted, when it holds only
// printable ASCII that needs no escape (HTML's <, > and & included, which encoding/json
// escapes); else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
