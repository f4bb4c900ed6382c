package inject

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// pinnedResponses are the sha256 of the handler's AdmissionResponse (JSON, through
// admission.Webhook as served; the label and annotation operations sorted, see canonicalPatch) for the load harness's review and for every golden input: a
// change to the injection's speed must not change a byte of what the API server receives.
// Refresh (only for an intended change of the output): go test ./internal/inject/ -run
// TestHandleResponsePinned -v, and copy the printed sums.
var pinnedResponses = map[string]string{
	"all-annotations":       "9a2c011debddf12c6d591d8ea271812b728d560b5b10cba2f66a38c4e711b989",
	"bare-pod":              "364fcb63ae37a6794bcb0dac44a624f718f1cb75e71bee2813b32fd14d535f50",
	"deployment-pod":        "5d376f9049f0d3557db1496ad3dd0c76641d57a50f003fcd5db104d2befc2efb",
	"harness-review":        "f06edfbacf6bb218eaea10b575066751ecab5a88624d3cb93eedf04592e6f5d1",
	"init-and-sidecar":      "a684658f44b633ef84dfe4e8a243a7bd48183d34ec373e87720210da5236781e",
	"job-pod":               "756169e0676e9bdb58eb3a270bd284bfffa58baa7f06f7d469bbd64de1ccfb66",
	"postgres-smtp-idp":     "8acb8b2824e528526b9682b85e1154a9b879e60691d30bc360b2c9c392bbbaa2",
	"service-account-token": "3c7124c9c05448865ac981b7392dc9689021705081775299ecbf71e011cae589",
	"sidecar-container":     "4c13e2fc7ef9e2a4c5a52a4ca47210d021f8182c43fb5cedfeed60b6d950eade",
	"sqlite-default":        "864d66a787b215b17f962a90f07c1d001acc2834a1df8ab8ac9e4bb39f78e80f",
}

// canonicalPatch sorts the operations on labels and annotations, which come last and in map
// order (Patch ranges over the maps), and keeps every other byte of the patch as it is.
func canonicalPatch(t *testing.T, patch []byte) []byte {
	t.Helper()
	var ops []json.RawMessage
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	first := len(ops)
	for i := len(ops) - 1; i >= 0; i-- {
		var op struct{ Path string }
		if err := json.Unmarshal(ops[i], &op); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(op.Path, "/metadata/") {
			break
		}
		first = i
	}
	slices.SortFunc(ops[first:], func(a, b json.RawMessage) int { return bytes.Compare(a, b) })
	out := []byte{'['}
	for i, op := range ops {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, op...)
	}
	return append(out, ']')
}

// handleBytes is the JSON of the response the webhook sends for req, handled twice by one
// handler (so a cache, if any, answers the second time) and required to be the same both times.
func handleBytes(t *testing.T, h *Handler, req admission.Request) []byte {
	t.Helper()
	wh := &admission.Webhook{Handler: h}
	var first []byte
	for i := range 3 {
		resp := wh.Handle(context.Background(), req)
		if !resp.Allowed || len(resp.Patch) == 0 {
			t.Fatalf("not allowed with a patch: %+v", resp.Result)
		}
		resp.Patch = canonicalPatch(t, resp.Patch)
		b, err := json.Marshal(resp.AdmissionResponse)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
		} else if string(b) != string(first) {
			t.Fatalf("response %d differs from the first:\n%s\n%s", i, first, b)
		}
	}
	return first
}

func TestHandleResponsePinned(t *testing.T) {
	reqs := map[string]admission.Request{}
	raw, err := os.ReadFile("../../hack/loadtest/harness/testdata/pod-create-review.json")
	if err != nil {
		t.Fatal(err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &ar); err != nil {
		t.Fatal(err)
	}
	reqs["harness-review"] = admission.Request{AdmissionRequest: *ar.Request}
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		reqs[strings.TrimSuffix(filepath.Base(in), ".in.yaml")] = request(t, readPod(t, in))
	}
	h := NewHandler(testOptions)
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			sum := sha256.Sum256(handleBytes(t, h, req))
			got := hex.EncodeToString(sum[:])
			t.Logf("%q: %q,", name, got)
			if want := pinnedResponses[name]; got != want {
				t.Errorf("response of %s changed: sha256 %s, pinned %s", name, got, want)
			}
		})
	}
}
