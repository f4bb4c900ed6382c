package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// The checks the examples' tests (examples/*) share: an example file is one object, applied
// server-side with strict field validation (unknown and duplicate fields are errors, values must
// pass the schema and its CEL rules), and read back holding everything the file says.

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// SingleObject decodes a YAML or JSON file that must hold exactly one object.
func SingleObject(y []byte) (*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(y), 4096)
	var docs []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
		if len(obj) > 0 {
			docs = append(docs, &unstructured.Unstructured{Object: obj})
		}
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("want one object, got %d", len(docs))
	}
	return docs[0], nil
}

// ApplyStrict server-side applies u as fieldManager with fieldValidation=Strict.
func ApplyStrict(ctx context.Context, d dynamic.Interface, gvr schema.GroupVersionResource, u *unstructured.Unstructured, fieldManager string) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode %s: %w", u.GetName(), err)
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: metav1.FieldValidationStrict}
	var ri dynamic.ResourceInterface = d.Resource(gvr)
	if u.GetNamespace() != "" {
		ri = d.Resource(gvr).Namespace(u.GetNamespace())
	}
	if _, err := ri.Patch(ctx, u.GetName(), "application/apply-patch+yaml", data, opts); err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// WaitCRDEstablished waits until the CustomResourceDefinition name is Established (or ctx ends).
func WaitCRDEstablished(ctx context.Context, d dynamic.Interface, name string) error {
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		crd, err := d.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not Established: %w", name, err)
	}
	return nil
}

// Subset reports the first value of want (an object as decoded from a file) that got (as the
// API server returned it) lacks or holds differently. got may have more (defaults, metadata,
// status).
func Subset(want, got any) error { return subset("", want, got) }

func subset(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an object", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", path, k)
			}
			if err := subset(path+"."+k, wv, gv); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
		for i := range w {
			if err := subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
		return nil
	default:
		// The file's numbers decode as float64 (plain JSON), the server's as int64.
		if f, ok := want.(float64); ok && f == float64(int64(f)) {
			want = int64(f)
		}
		if !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: got %v (%T), want %v (%T)", path, got, got, want, want)
		}
		return nil
	}
}
