package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// served is what an HTTP handler answered: status, headers but Date, body.
type served struct {
	Code   int
	Header http.Header
	Body   string
}

func serve(h http.Handler, contentType string, body io.Reader) served {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/mutate?timeout=10s", body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	res.Header.Del("Date")
	return served{res.StatusCode, res.Header, string(b)}
}

// checkServesAsControllerRuntime fails unless Webhook answers body as controller-runtime's
// admission.Webhook does around the same handler.
func checkServesAsControllerRuntime(t *testing.T, h *Handler, contentType string, body []byte) served {
	t.Helper()
	want := serve(&admission.Webhook{Handler: h}, contentType, bytes.NewReader(body))
	got := serve(NewWebhook(h), contentType, bytes.NewReader(body))
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Webhook answers otherwise than admission.Webhook (-controller-runtime +Webhook) for %.300q:\n%s", body, d)
	}
	return got
}

// reviewOf is the AdmissionReview the API server sends for the CREATE of pod (or of obj).
func reviewOf(t testing.TB, apiVersion string, obj any, mutate func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	req := rawRequest(raw).AdmissionRequest
	req.UserInfo.Username = "system:serviceaccount:kube-system:replicaset-controller"
	req.UserInfo.Groups = []string{"system:serviceaccounts", "system:authenticated"}
	req.Options = runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)}
	if mutate != nil {
		mutate(&req)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "AdmissionReview"}, Request: &req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func harnessReviewJSON(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../hack/loadtest/harness/testdata/pod-create-review.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// webhookBodies are reviews, good and bad, that the Webhook must answer as admission.Webhook.
func webhookBodies(t testing.TB) map[string][]byte {
	t.Helper()
	pod := func(ann map[string]string) *corev1.Pod {
		p := labelledPod(ann)
		p.APIVersion, p.Kind = "v1", "Pod"
		return p
	}
	bodies := map[string][]byte{
		"harness":             harnessReviewJSON(t),
		"v1":                  reviewOf(t, "admission.k8s.io/v1", pod(typicalPod()), nil),
		"v1beta1":             reviewOf(t, "admission.k8s.io/v1beta1", pod(typicalPod()), nil),
		"no apiVersion":       reviewOf(t, "", pod(typicalPod()), nil),
		"other apiVersion":    reviewOf(t, "admission.k8s.io/v2", pod(typicalPod()), nil),
		"denied":              reviewOf(t, "admission.k8s.io/v1", pod(map[string]string{AnnotationFeatures: "sso"}), nil),
		"conflict":            reviewOf(t, "admission.k8s.io/v1", func() *corev1.Pod { p := pod(nil); p.Spec.Containers[0].Name = ContainerKratos; return p }(), nil),
		"not labelled":        reviewOf(t, "admission.k8s.io/v1", func() *corev1.Pod { p := pod(nil); p.Labels = nil; return p }(), nil),
		"already injected":    reviewOf(t, "admission.k8s.io/v1", pod(map[string]string{AnnotationStatus: "injected"}), nil),
		"update":              reviewOf(t, "admission.k8s.io/v1", pod(nil), func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }),
		"subresource":         reviewOf(t, "admission.k8s.io/v1", pod(nil), func(r *admissionv1.AdmissionRequest) { r.SubResource = "status" }),
		"secret":              reviewOf(t, "admission.k8s.io/v1", &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}, nil),
		"secret as pod":       reviewOf(t, "admission.k8s.io/v1", map[string]any{"apiVersion": "v1", "kind": "Secret", "data": map[string]string{"a": "Yg=="}}, nil),
		"object null":         reviewOf(t, "admission.k8s.io/v1", nil, nil),
		"object not a pod":    reviewOf(t, "admission.k8s.io/v1", map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": map[string]any{"containers": "x"}}, nil),
		"unread field":        reviewOf(t, "admission.k8s.io/v1", map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"labels": map[string]string{LabelInject: "true"}, "generateName": "a-"}, "spec": map[string]any{"containers": []any{map[string]any{"name": "a", "resources": map[string]any{"limits": map[string]any{"cpu": "abc"}}}}}}, nil),
		"empty":               nil,
		"space":               []byte(" \n"),
		"null":                []byte("null"),
		"array":               []byte("[]"),
		"empty object":        []byte("{}"),
		"not json":            []byte("{"),
		"yaml":                []byte("kind: AdmissionReview\napiVersion: admission.k8s.io/v1\nrequest:\n  uid: x\n"),
		"no request":          []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`),
		"request null":        []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":null}`),
		"request empty":       []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}`),
		"request not object":  []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":"x"}`),
		"request bad field":   []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":5,"object":{}}}`),
		"trailing garbage":    []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"object":{}}} x`),
		"two values":          []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"object":{}}}{}`),
		"invalid inside":      []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"object":{"a":tru}}}`),
		"unbalanced string":   []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"object":{"a":"}"}}`),
		"escaped quote":       []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"a\"}","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"a\\\"-","labels":{"kratos-injector.io/inject":"true"}},"spec":{"containers":[{"name":"a"}]}}}}`),
		"response member":     []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"object":{}},"response":{"allowed":true}}`),
		"duplicate request":   []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"a","object":{}},"request":{"operation":"CREATE"}}`),
		"duplicate kind":      []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","kind":"Other","request":{"object":{}}}`),
		"folded kind":         []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","KIND":"Other","request":{"object":{}}}`),
		"kelvin kind":         []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","\u212aind":"Other","request":{"object":{}}}`),
		"escaped key":         []byte(`{"\u006bind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"object":{}}}`),
		"escaped value":       []byte(`{"kind":"Admission\u0052eview","apiVersion":"admission.k8s.io/v1","request":{"object":{}}}`),
		"other kind":          []byte(`{"kind":"Pod","apiVersion":"admission.k8s.io/v1","request":{"object":{}}}`),
		"bad group version":   []byte(`{"kind":"AdmissionReview","apiVersion":"a/b/c","request":{"object":{}}}`),
		"members reordered":   []byte(" {\n \"request\" : {\"uid\":\"u\",\"kind\":{\"version\":\"v1\",\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"labels\":{\"kratos-injector.io/inject\":\"true\"}},\"spec\":{\"containers\":[{\"name\":\"a\"}]}}} ,\r\t\"apiVersion\" :\"admission.k8s.io/v1\", \"kind\":\"AdmissionReview\" } \n"),
		"case-folded request": []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","Request":{"uid":"u","object":{}}}`),
		"folded field":        []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"UID":"u","Operation":"CREATE","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","Labels":{"a":"b"},"labels":{"kratos-injector.io/inject":"true"}},"spec":{"containers":[{"name":"a"}]}}}}`),
		"large ints":          []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"kratos-injector.io/inject":"true"}},"spec":{"terminationGracePeriodSeconds":9007199254740993,"containers":[{"name":"a","ports":[{"containerPort":1e3}]}]}}}}`),
	}
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		p := readPod(t, in)
		p.APIVersion, p.Kind = "v1", "Pod"
		bodies[filepath.Base(in)] = reviewOf(t, "admission.k8s.io/v1", p, nil)
		bodies[filepath.Base(in)+" v1beta1"] = reviewOf(t, "admission.k8s.io/v1beta1", p, nil)
	}
	return bodies
}

// TestWebhookServesAsControllerRuntime: for every review, good or bad, Webhook answers what
// controller-runtime's admission.Webhook answers around the same handler: the same status,
// headers and body, byte for byte (the injections too, as their responses are deterministic).
func TestWebhookServesAsControllerRuntime(t *testing.T) {
	h := NewHandler(testOptions)
	fast := 0
	for name, body := range webhookBodies(t) {
		t.Run(name, func(t *testing.T) {
			if ar, _ := decodeReview(body); ar != nil {
				fast++
			}
			got := checkServesAsControllerRuntime(t, h, "application/json", body)
			if testing.Verbose() {
				t.Logf("%d %.200s", got.Code, got.Body)
			}
		})
	}
	if fast < 20 {
		t.Errorf("only %d reviews decoded by Webhook itself: the comparison barely tests it", fast)
	}
	body := harnessReviewJSON(t)
	for _, ct := range []string{"", "application/json; charset=utf-8", "application/yaml"} {
		t.Run("content type "+ct, func(t *testing.T) { checkServesAsControllerRuntime(t, h, ct, body) })
	}
	t.Run("no body", func(t *testing.T) {
		want := serve(&admission.Webhook{Handler: h}, "application/json", http.NoBody)
		if got := serve(NewWebhook(h), "application/json", http.NoBody); !cmp.Equal(want, got) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("read error", func(t *testing.T) {
		reader := func() io.Reader {
			return io.MultiReader(bytes.NewReader(body[:100]), iotest.ErrReader(io.ErrUnexpectedEOF))
		}
		want := serve(&admission.Webhook{Handler: h}, "application/json", reader())
		if got := serve(NewWebhook(h), "application/json", reader()); !cmp.Equal(want, got) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		big := append(bytes.Repeat([]byte(" "), maxReviewBytes), body...)
		got := checkServesAsControllerRuntime(t, h, "application/json", big)
		if !strings.Contains(got.Body, `"code":413`) {
			t.Errorf("not refused as too large: %.300s", got.Body)
		}
	})
}

// FuzzWebhookServesAsControllerRuntime: whatever the body, Webhook answers what
// admission.Webhook answers.
func FuzzWebhookServesAsControllerRuntime(f *testing.F) {
	for _, body := range webhookBodies(f) {
		f.Add(body)
	}
	h := NewHandler(testOptions)
	f.Fuzz(func(t *testing.T, body []byte) {
		checkServesAsControllerRuntime(t, h, "application/json", body)
	})
}

// TestAppendInjection: appendInjection writes what json.Encoder writes for the reviews it takes,
// and takes every injection's.
func TestAppendInjection(t *testing.T) {
	jp := admissionv1.PatchTypeJSONPatch
	other := admissionv1.PatchType("Other<&>")
	allowed := func(uid string, warnings ...string) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{UID: types.UID(uid), Allowed: true, Result: &metav1.Status{Code: 200},
			Patch: []byte(`[{"op":"add","path":"/a","value":"<b>\u2028"}]`), PatchType: &jp, Warnings: warnings}
	}
	for name, tc := range map[string]struct {
		gvk  metav1.TypeMeta
		resp *admissionv1.AdmissionResponse
		ok   bool
	}{
		"injection":        {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, allowed("0b9c3fb4-0000-4000-8000-000000000000", "a warning"), true},
		"v1beta1":          {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1beta1", Kind: "AdmissionReview"}, allowed("u", "w1", "w2"), true},
		"no warnings":      {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, allowed("u"), true},
		"empty warnings":   {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, allowed("u", []string{}...), true},
		"no kind":          {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1"}, allowed("u"), true},
		"untyped":          {metav1.TypeMeta{}, allowed(""), true},
		"escapes":          {metav1.TypeMeta{APIVersion: "a<&>\"\\", Kind: "K\u2028\x01"}, allowed("u<&>\"é\xff", "w<&>\n\t\"\\é\u2029\xff\x7f", ""), true},
		"other patch type": {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse { r := allowed("u"); r.PatchType = &other; return r }(), true},
		"denied":           {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse { r := allowed("u"); r.Allowed = false; return r }(), false},
		"message":          {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse { r := allowed("u"); r.Result.Message = "m"; return r }(), false},
		"no status":        {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse { r := allowed("u"); r.Result = nil; return r }(), false},
		"no patch":         {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse { r := allowed("u"); r.Patch = nil; return r }(), false},
		"no patch type":    {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse { r := allowed("u"); r.PatchType = nil; return r }(), false},
		"audit": {metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, func() *admissionv1.AdmissionResponse {
			r := allowed("u")
			r.AuditAnnotations = map[string]string{}
			return r
		}(), false},
	} {
		t.Run(name, func(t *testing.T) {
			review := admissionv1.AdmissionReview{TypeMeta: tc.gvk, Response: tc.resp}
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(review); err != nil {
				t.Fatal(err)
			}
			got, ok := appendInjection([]byte("prefix"), &review)
			if ok != tc.ok {
				t.Fatalf("taken %v, want %v", ok, tc.ok)
			}
			if ok && string(got) != "prefix"+want.String() {
				t.Errorf("got  %s\nwant %s", got, want.String())
			}
		})
	}
}

// The request's lazy logger writes what admission.DefaultLogConstructor's writes, and adds the
// request's values only when it logs.
func TestLazyLogConstructor(t *testing.T) {
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "u", Namespace: "ns", Name: "p", Operation: admissionv1.Create,
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, UserInfo: authenticationv1.UserInfo{Username: "me"}}}
	logs := func(construct func(logr.Logger, *admission.Request) logr.Logger) []string {
		var out []string
		base := funcr.New(func(prefix, args string) { out = append(out, prefix+" "+args) }, funcr.Options{Verbosity: 1}).WithName("admission")
		l := construct(base, req)
		l.Info("one", "k", 1)
		l.V(1).Info("verbose")
		l.V(2).Info("hidden")
		l.Error(errors.New("boom"), "failed", "k", 2)
		l.WithValues("extra", true).Info("with values")
		l.WithValues().Info("with no values")
		l.WithName("sub").Info("named")
		if got := construct(base, nil); got != base {
			t.Error("a nil request does not give the base logger")
		}
		return out
	}
	want := logs(admission.DefaultLogConstructor)
	if d := cmp.Diff(want, logs(lazyLogConstructor)); d != "" {
		t.Errorf("lazy logger writes otherwise (-default +lazy):\n%s", d)
	}
	if len(want) != 6 {
		t.Errorf("%d lines: %q", len(want), want)
	}
}
