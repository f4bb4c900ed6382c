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
	"all-annotations":   "3fd200803c06fc31626604550e572949737c6205e1005bf06fdab7f657ccc2ad",
	"bare-pod":          "db5badf4e77a6d567af26c1da7f92695bc5baf4900f8ec1163031cab9e09808a",
	"deployment-pod":    "ae4b4721b5afad14420b5500d25b194d37ae7274f64aaf9c93aaac07d39b6f7f",
	"harness-review":    "33119030eb66c30b0c775f67f913fbd1bd11e23235e9c490dba7ad875e5c5c00",
	"init-and-sidecar":  "38d1416fe49a38b62cc70a79c26d90d50b087de4120742fa30d40a5d395fc2d7",
	"job-pod":           "761c01166b067f15add73c1fb12762a092d2aa9557a0058b893e7348de159fe7",
	"postgres-smtp-idp": "d601dcaca5de3a7f47af76b393cee21961df063b09a1dbefd87d5cff3bc5f4ac",
	"sidecar-container": "7f0d5808e5bd972e1aa81fa20b8c9a79ee0711247ae7f4cb46ec6965382dc586",
	"sqlite-default":    "bc0960117bc391de7e8c0bc205fde7ed725733736d6b91703794fd7928e211b0",
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
