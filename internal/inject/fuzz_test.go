package inject

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParseAnnotations feeds arbitrary annotations through the parser, Inject and the handler:
// nothing may panic, every outcome is a valid spec or a denial naming a field, and an accepted
// pod's patch applies.
func FuzzParseAnnotations(f *testing.F) {
	for _, d := range Annotations {
		f.Add(d.Name, d.Example, AnnotationDatabase, "sqlite")
	}
	f.Add(AnnotationFeatures, ",,,", AnnotationIDPSecrets, "a,a")
	f.Add(AnnotationSender, "\"\" <@>", AnnotationPublicURL, "http://[::1]:4433/")
	f.Add(Prefix+"x", "", AnnotationCORSOrigins, "https://*.")
	f.Add(AnnotationCPU, "1e400", AnnotationMemory, "9223372036854775807Ei")
	h := NewHandler(testOptions)
	inputDir := f.TempDir()
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		ann := map[string]string{k1: v1, k2: v2}
		spec, err := ParseAnnotations(ann, "")
		var inv *InvalidError
		switch {
		case err == nil:
			if spec == nil || spec.Database == "" || spec.Migrate == "" {
				t.Fatalf("incomplete spec %+v", spec)
			}
			if _, err := spec.Marshal(); err != nil {
				t.Fatal(err)
			}
			checkRenderable(t, spec, inputDir)
		case errors.As(err, &inv):
			for _, p := range inv.Problems {
				if p.Field == "" || p.Message == "" {
					t.Fatalf("problem without field or message: %+v", p)
				}
			}
		default:
			t.Fatalf("unexpected error type %T: %v", err, err)
		}

		pod := labelledPod(ann)
		req := request(t, pod)
		resp := h.Handle(context.Background(), req)
		if resp.Allowed {
			got := applyPatch(t, req.Object.Raw, resp)
			if _, ok := got.Annotations[AnnotationStatus]; !ok {
				t.Fatal("allowed without injection")
			}
			// The render container receives the spec as validated, after the kubelet's $(VAR)
			// expansion.
			want, _ := spec.Marshal() // spec is set: the handler injected
			for _, c := range got.Spec.InitContainers {
				if c.Name == ContainerConfig && !slices.Contains(expandedArgs(c), "--spec="+want) {
					t.Fatalf("render container's args are not the spec after expansion: %q", c.Args)
				}
			}
		} else if resp.Result == nil || !strings.Contains(resp.Result.Message, "kratos") && resp.Result.Code != 400 {
			t.Fatalf("denial without a clear message: %+v", resp.Result)
		}
	})
}

// FuzzHandleRaw feeds arbitrary objects to the handler: it must answer, never panic.
func FuzzHandleRaw(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"kratos-injector.io/inject":"true"}},"spec":{"containers":[{"name":"a","image":"b"}]}}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"kratos-injector.io/inject":"true"},"annotations":{"kratos-injector.io/status":"x"}}}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"kratos-injector.io/inject":"true"}},"spec":{"volumes":null,"initContainers":[]}}`))
	f.Add([]byte(`null`))
	h := NewHandler(testOptions)
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := h.Handle(context.Background(), rawRequest(raw))
		if resp.Allowed && len(resp.Patch) > 0 {
			applyPatch(t, raw, resp)
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
			t.Fatalf("denial without message: %+v", resp)
		}
	})
}
