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
	"all-annotations":   "29ca2857dc0e46e27fd59a520d7fa44df1184f34dd4b15b3e1e0d161136f7465",
	"bare-pod":          "531cd6604578f0ef2483533b56355edcb0ba368bf19775a3453e677df1d5eb41",
	"deployment-pod":    "50ce7521dbd49972eb55b53743f9363d65a5d48d1a972e70e0970459ef77624c",
	"harness-review":    "899d1989eb6a94e839d8611143956f86b5ef9a8d89d96ef785efc15b28161ade",
	"init-and-sidecar":  "6fb26c7a9c515763ffe90591cfee7ebaca6207db069a90feeef3935b94e87692",
	"job-pod":           "99a8bd6954b34ff2ccf26d6d336f09a35e2592f367ec088d944d77eab5b9f6c9",
	"postgres-smtp-idp": "3691fae28eb96a560e0a2825bd64ec773f183395c3b3847e857d38d33ba44580",
	"sidecar-container": "8ad5402d0883b7d84f156b27dbd2565df5da70b96503482c5e9b2f70d375d357",
	"sqlite-default":    "2c641a37dbcdf0f2dfa1054f0cf1a5fd4e7a00c30de7812d00851c6c2071cd41",
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
