package inject

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/randfill"
)

// checkParseRequest fails when parseRequest accepts b but sigs.k8s.io/json does not, or
// decodes it otherwise; it says whether parseRequest accepted it.
func checkParseRequest(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := parseRequest(b)
	if !ok {
		return false
	}
	var want admittedRequest
	if err := sjson.UnmarshalCaseSensitivePreserveInts(b, &want); err != nil {
		t.Fatalf("parseRequest accepts what sigs.k8s.io/json refuses (%v): %.500q", err, b)
	}
	if d := cmp.Diff(&want, got); d != "" {
		t.Fatalf("parseRequest decodes otherwise than sigs.k8s.io/json (-sigs.k8s.io/json +parseRequest) %.500q:\n%s", b, d)
	}
	return true
}

// randomRequests are AdmissionRequests of random pods (every field of both filled at random,
// strings mostly of the characters JSON writes without escapes), as JSON.
func randomRequests(t testing.TB, n int) [][]byte {
	t.Helper()
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/: =,;"
	f := randfill.NewWithSeed(2).NilChance(0.2).NumElements(0, 3).Funcs(
		func(s *string, c randfill.Continue) {
			if c.Intn(20) == 0 {
				*s = c.String(6) // any runes, escaped or not
				return
			}
			b := make([]byte, c.Intn(12))
			for i := range b {
				b[i] = chars[c.Intn(len(chars))]
			}
			*s = string(b)
		},
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewMilliQuantity(int64(c.Uint64()%100000), resource.DecimalSI)
		},
		func(v *metav1.FieldsV1, _ randfill.Continue) { v.SetRawBytes([]byte(`{"f:metadata":{}}`)) },
		func(v *intstr.IntOrString, c randfill.Continue) { *v = intstr.FromInt32(int32(c.Uint64() % 65536)) },
		func(v *runtime.RawExtension, c randfill.Continue) {
			v.Raw = [][]byte{nil, []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`), []byte(`[1, "x", {"a": null}]`)}[c.Intn(3)]
		},
	)
	var out [][]byte
	for range n {
		var pod corev1.Pod
		f.Fill(&pod)
		raw, err := json.Marshal(&pod)
		if err != nil {
			t.Fatal(err)
		}
		var req admissionv1.AdmissionRequest
		f.Fill(&req)
		req.Object = runtime.RawExtension{Raw: raw}
		b, err := json.Marshal(&req)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestParseRequestAsSigsJSON: parseRequest decodes the requests of every review the webhook's
// tests use, and random ones, as sigs.k8s.io/json does, and most of them at all.
func TestParseRequestAsSigsJSON(t *testing.T) {
	accepted, total := 0, 0
	for name, body := range webhookBodies(t) {
		var ar struct{ Request json.RawMessage }
		if json.Unmarshal(body, &ar) != nil || len(ar.Request) == 0 {
			continue
		}
		total++
		if checkParseRequest(t, ar.Request) {
			accepted++
		} else if strings.HasSuffix(name, ".in.yaml") || name == "harness" || name == "v1" {
			t.Errorf("%s: not accepted", name)
		}
	}
	for _, b := range randomRequests(t, 300) {
		total++
		if checkParseRequest(t, b) {
			accepted++
		}
	}
	t.Logf("%d of %d accepted", accepted, total)
	if accepted < total/2 {
		t.Errorf("only %d of %d requests accepted: the comparison barely tests parseRequest", accepted, total)
	}
	for _, b := range []string{
		`{}`, ` {"uid":"a"} `, `{"uid":null,"dryRun":null,"requestKind":null,"object":null,"options":null}`,
		`{"dryRun":true,"requestKind":{"kind":"Pod"},"userInfo":{"extra":{"a":["b",null],"c":null}},"options":{ "x" : [1,2.5e-3,-0,true,false,null,"\u00e9\n"] }}`,
		`{"object":{"metadata":{"labels":{"a":"b","a":"c","d":null},"annotations":{}},"spec":{"containers":[null,{"ports":[{"containerPort":-0,"hostPort":2147483647}]}],"volumes":[],"terminationGracePeriodSeconds":-9223372036854775808}}}`,
		`{"object":{"spec":{"containers":[{"ports":[{"containerPort":2147483648}]}]}}}`,
		`{"object":{"spec":{"containers":[{"ports":[{"containerPort":1.0}]}]}}}`,
		`{"object":{"spec":{"containers":[{"ports":[{"containerPort":01}]}]}}}`,
		`{"uid":"a","uid":"b"}`, `{"uid":"\u0061"}`, `{"u\u0069d":"a"}`, `{"uid":"a"`, `{"uid":"a"}}`, `{"uid":"a",}`,
		`{"object":{"kind":"Pod","Kind":"x","KIND":"y"}}`, `{"object":[]}`, `{"object":{"spec":{"hostNetwork":"true"}}}`,
		"{\"uid\":\"a\xffb\"}", "{\"x\":\"a\xffb\"}", "{\"x\":\"a\x01\"}", `{"x":"\x"}`, `{"x":"\u12"}`, `{"x":tru}`, `{"x":-}`, `{"x":1.}`, `{"x":1e}`,
		`{"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
	} {
		checkParseRequest(t, []byte(b))
	}
}

// FuzzParseRequestAsSigsJSON: whatever the JSON, parseRequest decodes it as sigs.k8s.io/json
// or not at all.
func FuzzParseRequestAsSigsJSON(f *testing.F) {
	for _, body := range webhookBodies(f) {
		var ar struct{ Request json.RawMessage }
		if json.Unmarshal(body, &ar) == nil && len(ar.Request) > 0 {
			f.Add([]byte(ar.Request))
		}
	}
	for _, b := range randomRequests(f, 20) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkParseRequest(t, b) })
}
