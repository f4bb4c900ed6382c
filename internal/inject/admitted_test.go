package inject

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/randfill"
)

// jsonFields are the fields of a struct type by JSON name, those of embedded and inline
// structs included, as encoding/json sees them.
func jsonFields(t *testing.T, typ reflect.Type) map[string]reflect.StructField {
	t.Helper()
	out := map[string]reflect.StructField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" || strings.Contains(opts, "inline") {
			for n, sf := range jsonFields(t, f.Type) {
				out[n] = sf
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// TestAdmittedPodMirrorsPod: every field of admittedPod, at every depth, has the JSON name,
// tag and Go type of its corev1.Pod counterpart (or is the projection of that type), so that
// it decodes from the same JSON as the whole pod would, to the same values.
func TestAdmittedPodMirrorsPod(t *testing.T) {
	projections := map[reflect.Type]reflect.Type{
		reflect.TypeFor[admittedPod]():       reflect.TypeFor[corev1.Pod](),
		reflect.TypeFor[admittedMeta]():      reflect.TypeFor[corev1.Pod]().Field(1).Type, // metav1.ObjectMeta
		reflect.TypeFor[admittedSpec]():      reflect.TypeFor[corev1.PodSpec](),
		reflect.TypeFor[admittedContainer](): reflect.TypeFor[corev1.Container](),
		reflect.TypeFor[admittedVolume]():    reflect.TypeFor[corev1.Volume](),
	}
	var check func(ours, theirs reflect.Type, path string)
	check = func(ours, theirs reflect.Type, path string) {
		if ours.Kind() != theirs.Kind() {
			t.Errorf("%s: %s, corev1 has %s", path, ours, theirs)
			return
		}
		switch ours.Kind() {
		case reflect.Slice, reflect.Pointer:
			check(ours.Elem(), theirs.Elem(), path+"[]")
			return
		case reflect.Struct:
			if want, ok := projections[ours]; ok {
				if want != theirs {
					t.Errorf("%s: %s projects %s, corev1 has %s", path, ours, want, theirs)
					return
				}
				all := jsonFields(t, theirs)
				for name, f := range jsonFields(t, ours) {
					tf, ok := all[name]
					if !ok {
						t.Errorf("%s.%s: %s has no such field", path, name, theirs)
						continue
					}
					if f.Tag.Get("json") != tf.Tag.Get("json") {
						t.Errorf("%s.%s: tag %q, corev1 %q", path, name, f.Tag.Get("json"), tf.Tag.Get("json"))
					}
					check(f.Type, tf.Type, path+"."+name)
				}
				return
			}
		}
		if ours != theirs {
			t.Errorf("%s: %s, corev1 has %s", path, ours, theirs)
		}
	}
	check(reflect.TypeFor[admittedPod](), reflect.TypeFor[corev1.Pod](), "pod")
}

// TestAdmittedPodInjectsAsPod: for the golden pods, the harness's review and random pods
// (every field of corev1.Pod filled at random, so that a field the injection came to read
// and admittedPod lacks would change the answer), the handler, which decodes admittedPod,
// answers what Inject and Patch make of the whole pod: the same denial, or the same patch
// byte for byte and the same warnings. (The cache of injected parts answers both alike: it is
// held to Patch by TestPatchWithCachedParts and TestHandleResponsePinned.)
func TestAdmittedPodInjectsAsPod(t *testing.T) {
	raws := map[string][]byte{}
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		raws[filepath.Base(in)] = request(t, readPod(t, in)).Object.Raw
	}
	b, err := os.ReadFile("../../hack/loadtest/harness/testdata/pod-create-review.json")
	if err != nil {
		t.Fatal(err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &ar); err != nil {
		t.Fatal(err)
	}
	raws["harness-review"] = ar.Request.Object.Raw

	f := randfill.NewWithSeed(1).NilChance(0.3).NumElements(0, 3).Funcs(
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewMilliQuantity(int64(c.Uint64()%100000), resource.DecimalSI)
		},
		func(v *metav1.FieldsV1, _ randfill.Continue) { v.SetRawBytes([]byte(`{"f:metadata":{}}`)) },
		func(v *intstr.IntOrString, c randfill.Continue) {
			if c.Bool() {
				*v = intstr.FromInt32(int32(c.Uint64() % 65536))
			} else {
				*v = intstr.FromString(c.String(8))
			}
		},
	)
	annotationSets := []map[string]string{nil, typicalPod(), {AnnotationSidecar: "container"}, {AnnotationMigrate: "auto", AnnotationDatabaseSecret: "db"}, {AnnotationFeatures: "nope"}}
	for i := range 300 {
		var pod corev1.Pod
		f.Fill(&pod)
		pod.APIVersion, pod.Kind = "v1", "Pod"
		if i%10 != 0 { // a few are left unlabelled
			if pod.Labels == nil {
				pod.Labels = map[string]string{}
			}
			pod.Labels[LabelInject] = "true"
			delete(pod.Labels, LabelInstance)
		}
		for k, v := range annotationSets[i%len(annotationSets)] {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		// Most are injectable; a few are denied for their own fields.
		pod.Spec.HostNetwork = i%13 == 1
		if len(pod.Spec.Containers) == 0 && i%17 != 2 {
			f.Fill(&pod.Spec.Containers)
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "app", Image: "app:1"})
		}
		if i%7 == 3 {
			pod.Spec.RestartPolicy = corev1.RestartPolicyNever
		}
		raw, err := json.Marshal(&pod)
		if err != nil {
			t.Fatalf("random pod %d: %v", i, err)
		}
		raws["random-"+string(rune('a'+i/26%26))+string(rune('a'+i%26))] = raw
	}

	h := NewHandler(testOptions)
	injected := 0
	for name, raw := range raws {
		whole := &corev1.Pod{}
		if err := sjson.UnmarshalCaseSensitivePreserveInts(raw, whole); err != nil {
			t.Errorf("%s: the whole pod does not decode: %v", name, err)
			continue
		}
		want := h.handlePod(context.Background(), whole)
		got := h.Handle(context.Background(), rawRequest(raw))
		if len(got.Patch) > 0 {
			injected++
		} else if testing.Verbose() && got.Result != nil {
			t.Logf("%s: not injected: %s", name, got.Result.Message)
		}
		if d := cmp.Diff(want.AdmissionResponse, got.AdmissionResponse); d != "" {
			t.Errorf("%s: the handler answers otherwise than for the whole pod (-whole +handler):\n%s", name, d)
		}
	}
	if injected < len(raws)/2 {
		t.Errorf("only %d of %d pods injected: the random pods do not exercise the injection", injected, len(raws))
	}
}
