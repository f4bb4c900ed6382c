package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// request builds the AdmissionRequest the API server sends for a pod creation: the pod's
// namespace is in the request, not necessarily in the object.
func request(t testing.TB, pod *corev1.Pod) admission.Request {
	t.Helper()
	p := pod.DeepCopy()
	p.APIVersion, p.Kind = "v1", "Pod"
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return rawRequest(raw)
}

func rawRequest(raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "0b9c3fb4-0000-4000-8000-000000000000",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "team-a",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// applyPatch applies the response's JSON patch to the raw pod, as the API server does.
func applyPatch(t testing.TB, raw []byte, resp admission.Response) *corev1.Pod {
	t.Helper()
	if err := resp.Complete(admission.Request{}); err != nil {
		t.Fatal(err)
	}
	patched := raw
	if len(resp.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("decode patch: %v", err)
		}
		if patched, err = p.Apply(raw); err != nil {
			t.Fatalf("apply patch: %v", err)
		}
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(patched, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func TestHandlePatchEqualsInject(t *testing.T) {
	h := NewHandler(testOptions)
	for _, file := range []string{"testdata/deployment-pod.in.yaml", "testdata/all-annotations.in.yaml", "testdata/sidecar-container.in.yaml", "testdata/init-and-sidecar.in.yaml"} {
		t.Run(file, func(t *testing.T) {
			pod := readPod(t, file)
			req := request(t, pod)
			resp := h.Handle(context.Background(), req)
			if !resp.Allowed || len(resp.Patch) == 0 {
				t.Fatalf("not allowed with a patch: %+v", resp.Result)
			}
			got := applyPatch(t, req.Object.Raw, resp)
			res, err := Inject(pod, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			want := res.Pod
			want.APIVersion, want.Kind = "v1", "Pod"
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("patched pod differs from Inject's (-inject +patched):\n%s", d)
			}
		})
	}
}

func TestHandleWarnings(t *testing.T) {
	resp := NewHandler(testOptions).Handle(context.Background(), request(t, labelledPod(nil)))
	if !resp.Allowed || len(resp.Warnings) != 2 {
		t.Errorf("want allowed with 2 warnings, got %v %q", resp.Allowed, resp.Warnings)
	}
}

func TestHandleSkips(t *testing.T) {
	h := NewHandler(testOptions)
	unlabelled := labelledPod(nil)
	delete(unlabelled.Labels, LabelInject)
	res, err := Inject(labelledPod(nil), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	injected := res.Pod
	update := request(t, labelledPod(nil))
	update.Operation = admissionv1.Update
	notPod := request(t, labelledPod(nil))
	notPod.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	for name, req := range map[string]admission.Request{
		"not labelled":     request(t, unlabelled),
		"already injected": request(t, injected),
		"update":           update,
		"not a pod":        notPod,
	} {
		t.Run(name, func(t *testing.T) {
			resp := h.Handle(context.Background(), req)
			if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Patch) != 0 || resp.PatchType != nil {
				t.Errorf("want allowed without patch, got %+v", resp)
			}
		})
	}
}

func TestHandleDenies(t *testing.T) {
	h := NewHandler(testOptions)
	pod := labelledPod(map[string]string{AnnotationFeatures: "sso", AnnotationPublicURL: "x"})
	resp := h.Handle(context.Background(), request(t, pod))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != 403 {
		t.Fatalf("want denied, got %+v", resp)
	}
	for _, want := range []string{AnnotationFeatures + ": unknown feature", AnnotationPublicURL + ": "} {
		if !strings.Contains(resp.Result.Message, want) {
			t.Errorf("message %q lacks %q", resp.Result.Message, want)
		}
	}

	for name, raw := range map[string]string{"empty": "", "not json": "{", "wrong kind": `{"apiVersion":"v1","kind":"Secret"}`} {
		t.Run(name, func(t *testing.T) {
			resp := h.Handle(context.Background(), rawRequest([]byte(raw)))
			if resp.Allowed || resp.Result == nil || resp.Result.Code != 400 {
				t.Errorf("want 400, got %+v", resp.Result)
			}
		})
	}
}

// TestHandleThroughWebhook goes through controller-runtime's HTTP layer once, as the server does.
func TestHandleThroughWebhook(t *testing.T) {
	wh := &admission.Webhook{Handler: NewHandler(testOptions)}
	req := request(t, labelledPod(nil))
	resp := wh.Handle(context.Background(), req)
	if !resp.Allowed || resp.UID != req.UID || resp.PatchType == nil || len(resp.Patch) == 0 {
		t.Fatalf("bad response %+v", resp.AdmissionResponse)
	}
}

// TestHandleKeepsUnknownFields: a field this build's k8s.io/api does not know (a newer API
// server's) survives, because the patch only adds.
func TestHandleKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"x-","labels":{"kratos-injector.io/inject":"true"},"annotations":{},"futureMeta":1},
"spec":{"futureSpec":{"a":[1,2]},"initContainers":[],"containers":[{"name":"app","image":"app:1","futureContainerField":true}],"volumes":null}}`)
	resp := NewHandler(testOptions).Handle(context.Background(), rawRequest(raw))
	if err := resp.Complete(admission.Request{}); err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"futureSpec":{"a":[1,2]}`, `"futureContainerField":true`, `"futureMeta":1`, `"name":"kratos-config"`, `"kratos-injector.io/status":"injected;`} {
		if !strings.Contains(string(patched), want) {
			t.Errorf("patched pod lacks %s:\n%s", want, patched)
		}
	}
}

// TestHandleConcurrent: one Handler serves the API server's concurrent requests (run with -race).
func TestHandleConcurrent(t *testing.T) {
	h := NewHandler(testOptions)
	req := request(t, labelledPod(map[string]string{AnnotationDatabaseSecret: "db", AnnotationMemory: "300Mi"}))
	want := h.Handle(context.Background(), req)
	if err := want.Complete(req); err != nil {
		t.Fatal(err)
	}
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			var msg string
			for range 50 {
				got := h.Handle(context.Background(), req)
				if err := got.Complete(req); err != nil || !got.Allowed || len(got.Patch) != len(want.Patch) {
					msg = fmt.Sprintf("response differs: %v %v", err, got.Result)
					break
				}
			}
			errs <- msg
		}()
	}
	for range 8 {
		if m := <-errs; m != "" {
			t.Error(m)
		}
	}
}
