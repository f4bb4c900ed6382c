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
	"all-annotations":   "16046baf6ad65957bfda2f66e652812842dbf3893b6847472909877b302eee0f",
	"bare-pod":          "92d2d2403f50d45dad99af5bf2fa8785e568315d8e97f80d74d734dbeede2bfd",
	"deployment-pod":    "9ca006652f2e7123c11e04b828d7ad14ac608278b6acbfb5c8cb542bffd8ff96",
	"harness-review":    "df9812ebaeac828342310995d92de1e3fe7df430dce62f1f4eee9c45dba4d16d",
	"init-and-sidecar":  "21068fa3656e8a42e06f621e165276261726236fb18cb85f796f3febf1a33f5a",
	"job-pod":           "e5042f3b15c5fddfa5f34a06563167f88f2ed3bf1221598bf3917da27d576b39",
	"postgres-smtp-idp": "1066ace5fd84fd5e3b20f8b4ee93d49ef2917d4e1f6e6806712980371c4409b0",
	"sidecar-container": "d4063ba2276040112b125d6a5ee0cb0a28baaec27670ffe9ac808eb1c31d2b9f",
	"sqlite-default":    "ccb1f81965db71b756615ce4f8db8b1f6ce4b228a7f9932188bd7a20de9474c2",
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
