package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Apply creates or updates (server-side apply) every object of a multi-document YAML stream,
// like `kubectl apply --server-side -f`. Objects without a namespace get defaultNS when
// namespaced. Kinds defined by CRDs applied earlier in the stream are retried until their API is
// served.
func (cp *ControlPlane) Apply(ctx context.Context, defaultNS string, manifest []byte) error {
	return cp.apply(ctx, defaultNS, manifest, false)
}

// DryRun applies the stream with server-side dry-run: the API server validates and admits every
// object (schema, CRD validation, admission) without persisting anything.
func (cp *ControlPlane) DryRun(ctx context.Context, defaultNS string, manifest []byte) error {
	return cp.apply(ctx, defaultNS, manifest, true)
}

func (cp *ControlPlane) apply(ctx context.Context, defaultNS string, manifest []byte, dryRun bool) error {
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		return err
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)

	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("decode manifest: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		var mapping *meta.RESTMapping
		deadline := time.Now().Add(30 * time.Second)
		for {
			mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err == nil || time.Now().After(deadline) {
				break
			}
			cached.Invalidate()
			mapper.Reset()
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := u.GetNamespace()
			if ns == "" {
				ns = defaultNS
				u.SetNamespace(ns)
			}
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		data, err := u.MarshalJSON()
		if err != nil {
			return err
		}
		po := metav1.PatchOptions{FieldManager: "kratos-injector-e2e", Force: ptrTrue()}
		if dryRun {
			po.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Patch(ctx, u.GetName(), "application/apply-patch+yaml", data, po); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
		if gvk.Kind == "CustomResourceDefinition" && !dryRun {
			if err := waitEstablished(ctx, dyn, mapping, u.GetName()); err != nil {
				return err
			}
		}
	}
}

func waitEstablished(ctx context.Context, dyn dynamic.Interface, m *meta.RESTMapping, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		obj, err := dyn.Resource(m.Resource).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, c := range conds {
				cm, _ := c.(map[string]any)
				if cm["type"] == "Established" && cm["status"] == "True" {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRD %s not established after 30s", name)
}

func ptrTrue() *bool { t := true; return &t }

// Kustomize renders a kustomization directory with kustomize's library (what `kubectl apply -k`
// does), so tests apply the manifests exactly as users would.
func Kustomize(dir string) ([]byte, error) {
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return rm.AsYaml()
}
