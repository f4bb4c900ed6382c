package inject

import (
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// ParseAnnotations reads only annotations under Prefix, so the cache key may ignore the rest.
func TestSpecCacheKeyCoversSettings(t *testing.T) {
	for _, d := range Annotations {
		if !strings.HasPrefix(d.Name, Prefix) {
			t.Errorf("%s is not under %s: specKey would not see it", d.Name, Prefix)
		}
	}
	a := map[string]string{Prefix + "a": "b" + Prefix + "c", "other": "x"}
	b := map[string]string{Prefix + "ab": Prefix + "c"}
	if specKey(a) == specKey(b) {
		t.Error("two different sets of settings share a key")
	}
	if specKey(a) != specKey(map[string]string{Prefix + "a": "b" + Prefix + "c", "other": "y"}) {
		t.Error("an annotation outside the settings changes the key")
	}
}

// Every setting, changed after a pod with the base settings warmed the cache, gives the result
// a fresh Injector gives: no two pods whose settings differ share an entry.
func TestSpecCacheDistinguishesSettings(t *testing.T) {
	cached := NewInjector(testOptions)
	base := labelledPod(typicalPod())
	if _, err := cached.Inject(base); err != nil {
		t.Fatal(err)
	}
	for _, d := range Annotations {
		if d.parse == nil || d.Example == "" {
			continue
		}
		for _, v := range []string{d.Example, "", "%bad"} {
			ann := maps.Clone(typicalPod())
			if ann[d.Name] == v {
				continue
			}
			ann[d.Name] = v
			t.Run(fmt.Sprintf("%s=%q", d.Name, v), func(t *testing.T) {
				for range 2 { // a miss, then a hit
					pod := labelledPod(ann)
					got, gotErr := cached.Inject(pod)
					want, wantErr := NewInjector(testOptions).Inject(pod)
					if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
						t.Fatalf("error %v, uncached %v", gotErr, wantErr)
					}
					if gotErr != nil {
						return
					}
					if d := cmp.Diff([]any{want.Pod, want.Spec, want.Warnings}, []any{got.Pod, got.Spec, got.Warnings}); d != "" {
						t.Fatalf("cached result differs (-uncached +cached):\n%s", d)
					}
					samePatch(t, pod, got)
				}
			})
		}
	}
}

// A caller changing the spec it got changes neither the cache nor the next pod's result.
func TestSpecCacheHandsOutCopies(t *testing.T) {
	in := NewInjector(testOptions)
	pod := labelledPod(typicalPod())
	first, err := in.Inject(pod)
	if err != nil {
		t.Fatal(err)
	}
	want := first.Spec.Features[0]
	first.Spec.Features[0], first.Spec.PublicURL = "changed", "changed"
	again, err := in.Inject(pod)
	if err != nil {
		t.Fatal(err)
	}
	again.Spec.Features[0] = "changed too"
	last, err := in.Inject(pod)
	if err != nil {
		t.Fatal(err)
	}
	if last.Spec.Features[0] != want || last.Spec.PublicURL == "changed" {
		t.Errorf("the cached spec was changed through a result: %+v", last.Spec)
	}
}

func TestSpecCacheBounded(t *testing.T) {
	in := NewInjector(testOptions)
	for i := range specCacheSize + 10 {
		ann := typicalPod()
		ann[AnnotationSecretsSecret] = fmt.Sprintf("secret-%d", i)
		if _, err := in.Inject(labelledPod(ann)); err != nil {
			t.Fatal(err)
		}
	}
	if n, l := len(in.specs.entries), in.specs.lru.Len(); n != specCacheSize || l != specCacheSize {
		t.Errorf("cache holds %d entries (%d in the list), want %d", n, l, specCacheSize)
	}
}

// samePatch checks that the patch from the cached encodings of the injected parts is Patch's,
// byte for byte (but for the map order of the label and annotation operations).
func samePatch(t *testing.T, pod *corev1.Pod, res *Result) {
	t.Helper()
	for range 2 { // the first call stores the encodings, the second uses them
		fast, err := patchWith(pod, res.Pod, res.parsed)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := Patch(pod, res.Pod)
		if err != nil {
			t.Fatal(err)
		}
		// Byte for byte: the label and annotation operations come in key order.
		if string(fast) != string(slow) {
			t.Fatalf("patch from cached parts differs:\n%s\n%s", fast, slow)
		}
	}
	if res.parsed.parts.Load() == nil {
		t.Fatal("the injected parts were not cached")
	}
}

// Every golden input, whose injected parts go in with and without existing init containers,
// containers and volumes, gets the same patch from the cached parts.
func TestPatchWithCachedParts(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	in := NewInjector(testOptions)
	for _, file := range inputs {
		t.Run(filepath.Base(file), func(t *testing.T) {
			pod := readPod(t, file)
			res, err := in.Inject(pod)
			if err != nil {
				t.Fatal(err)
			}
			samePatch(t, pod, res)
		})
	}
}

// cloneSpec must copy every field that shares memory (slices, maps, pointers): a new such
// field in config.Spec fails here until cloneSpec copies it, so a cached spec can never be
// changed through a copy handed out.
func TestCloneSpecCopiesEveryReference(t *testing.T) {
	orig := &config.Spec{}
	v := reflect.ValueOf(orig).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Map, reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func:
			t.Errorf("config.Spec.%s is a %s: teach cloneSpec (and this test) to copy it", v.Type().Field(i).Name, f.Kind())
		}
	}
	c := reflect.ValueOf(cloneSpec(orig)).Elem()
	for i := range v.NumField() {
		if v.Field(i).Kind() == reflect.Slice && v.Field(i).Pointer() == c.Field(i).Pointer() {
			t.Errorf("cloneSpec shares config.Spec.%s with the cached spec", v.Type().Field(i).Name)
		}
	}
}

// Kratos's preStop sleep follows the pod's terminationGracePeriodSeconds (the API server refuses
// a longer sleep), the one input of the injected parts besides the settings: pods with the same
// settings and another grace period never get a cached container with the wrong sleep.
func TestPreStopFollowsGracePeriod(t *testing.T) {
	in := NewInjector(testOptions)
	for _, tc := range []struct {
		grace *int64
		want  int64 // 0: no preStop
	}{{nil, preStopSeconds}, {ptr.To[int64](1), 1}, {ptr.To[int64](0), 0}, {ptr.To[int64](120), preStopSeconds}, {nil, preStopSeconds}, {ptr.To[int64](2), 2}} {
		pod := labelledPod(nil)
		pod.Spec.TerminationGracePeriodSeconds = tc.grace
		res, err := in.Inject(pod)
		if err != nil {
			t.Fatal(err)
		}
		c := kratosOf(res.Pod)
		got := int64(0)
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			got = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if got != tc.want {
			t.Errorf("grace %v: preStop sleep %d, want %d", tc.grace, got, tc.want)
		}
		samePatch(t, pod, res)
	}
}

func kratosOf(p *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == ContainerKratos {
				return &cs[i]
			}
		}
	}
	return nil
}

// The same pod gets the same patch bytes every time, even with several labels and annotations to
// add (Go's map order is random; the patch writes them in key order).
func TestPatchBytesStable(t *testing.T) {
	pod := readPod(t, "testdata/sidecar-container.in.yaml")
	var first []byte
	for i := range 50 {
		res, err := NewInjector(testOptions).Inject(pod)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Patch(pod, res.Pod)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		} else if string(p) != string(first) {
			t.Fatalf("patch %d differs from the first:\n%s\n%s", i, p, first)
		}
	}
}

// The handler's Inject, whose injected containers and volumes are cached and shared, makes the
// same pods as Inject, for every golden input and grace period, from a cold and a warm cache;
// and changing a Result's spec does not change the cached parts.
func TestSharedPartsAsBuilt(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	in := NewInjector(testOptions)
	for _, file := range inputs {
		for _, grace := range []*int64{nil, ptr.To[int64](2), ptr.To[int64](0), nil} {
			pod := readPod(t, file)
			pod.Spec.TerminationGracePeriodSeconds = grace
			want, err := Inject(pod, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				got, err := in.inject(pod, true)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(want.Pod, got.Pod); d != "" {
					t.Errorf("%s, grace %v: shared parts make another pod (-built +shared):\n%s", file, grace, d)
				}
				got.Spec.Image, got.Spec.Features = "changed", append(got.Spec.Features, "changed")
			}
		}
	}
}
