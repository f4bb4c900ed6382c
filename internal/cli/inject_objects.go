package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// manifestDoc is one YAML document of the input.
type manifestDoc struct {
	source string // file name, or "stdin"
	index  int    // 1-based position in its source
	raw    []byte
	// out is what is written: raw when nothing was injected.
	out []byte
}

func (d *manifestDoc) where() string { return fmt.Sprintf("%s, document %d", d.source, d.index) }

// splitDocuments splits a YAML stream at its document separators: lines that start with "---"
// followed by nothing but blanks or a comment, as kubectl reads them. Each document keeps its
// bytes exactly, so a document written back unchanged is byte-identical.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	for pos := 0; pos < len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		line := data[pos:next]
		if rest, ok := bytes.CutPrefix(line, []byte("---")); ok {
			if r := bytes.TrimSpace(rest); len(r) == 0 || r[0] == '#' {
				docs = append(docs, data[start:pos])
				start = next
			}
		}
		pos = next
	}
	return append(docs, data[start:])
}

// offlineInjector injects the pods and pod templates of manifests with the webhook's Injector.
type offlineInjector struct {
	injector    *inject.Injector
	kratosImage string
	// namespace is -n: the namespace of objects that name none ("default" without -n).
	namespace string
	warnings  []string
}

// objectHead is what identifies an object and where its pod template is.
type objectHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
		Namespace    string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func (h *objectHead) group() string {
	g, _, ok := strings.Cut(h.APIVersion, "/")
	if !ok {
		return ""
	}
	return g
}

func (h *objectHead) String() string {
	name := h.Metadata.Name
	if name == "" && h.Metadata.GenerateName != "" {
		name = h.Metadata.GenerateName + "*"
	}
	if name == "" {
		name = "(unnamed)"
	}
	kind := h.Kind
	if kind == "" {
		kind = "object"
	}
	return kind + " " + name
}

// templatePath is the JSON pointer of the pod template of a kind ("" for a Pod itself); ok is
// false for the kinds that have none.
func templatePath(group, kind string) (path string, ok bool) {
	switch {
	case group == "" && kind == "Pod":
		return "", true
	case group == "" && kind == "ReplicationController",
		group == "apps" && (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet"),
		group == "batch" && kind == "Job":
		return "/spec/template", true
	case group == "batch" && kind == "CronJob":
		return "/spec/jobTemplate/spec/template", true
	}
	return "", false
}

// injectDoc sets d.out: the document injected, or unchanged. It returns one error per object
// that cannot be injected.
func (in *offlineInjector) injectDoc(d *manifestDoc) []error {
	d.out = d.raw
	js, err := yaml.YAMLToJSON(d.raw)
	if err != nil {
		return []error{fmt.Errorf("%s: not YAML: %w", d.where(), err)}
	}
	if t := bytes.TrimSpace(js); len(t) == 0 || t[0] != '{' {
		// Comments only, a scalar or a sequence: not a Kubernetes object; written back as is.
		return nil
	}
	var ops []json.RawMessage
	if errs := in.object(js, "", d.where(), &ops); len(errs) > 0 {
		return errs
	}
	if len(ops) == 0 {
		return nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return []error{err}
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", d.where(), err)}
	}
	patched, err := p.Apply(js)
	if err != nil {
		return []error{fmt.Errorf("%s: apply the injection: %w", d.where(), err)}
	}
	out, err := yaml.JSONToYAML(patched)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", d.where(), err)}
	}
	// The document is re-encoded (keys sorted, comments gone): keep at least its head comment.
	d.out = append(leadingComments(d.raw), out...)
	return nil
}

// leadingComments returns the comment lines (and blank lines among them) before a document's
// first content line.
func leadingComments(doc []byte) []byte {
	end := 0
	for pos := 0; pos < len(doc); {
		next := len(doc)
		if i := bytes.IndexByte(doc[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		l := bytes.TrimSpace(doc[pos:next])
		if len(l) > 0 && l[0] != '#' {
			break
		}
		if len(l) > 0 {
			end = next
		}
		pos = next
	}
	out := bytes.Clone(doc[:end])
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}

// object appends to ops the JSON patch operations injecting the object js found at pointer
// at: its pod or pod template, or the items of a List.
func (in *offlineInjector) object(js []byte, at, where string, ops *[]json.RawMessage) []error {
	var h objectHead
	if err := json.Unmarshal(js, &h); err != nil {
		return []error{fmt.Errorf("%s: %w", where, err)}
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		var errs []error
		for i, item := range h.Items {
			itemAt := at + "/items/" + strconv.Itoa(i)
			errs = append(errs, in.object(item, itemAt, fmt.Sprintf("%s, %s item %d", where, h.Kind, i+1), ops)...)
		}
		return errs
	}
	path, ok := templatePath(h.group(), h.Kind)
	if !ok {
		return nil
	}
	raw := rawAt(js, path)
	if raw == nil {
		return nil // no template: nothing to inject (the API server refuses such a workload anyway)
	}
	pod := &corev1.Pod{}
	if path == "" {
		if err := sjson.UnmarshalCaseSensitivePreserveInts(raw, pod); err != nil {
			return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
		}
	} else {
		var tmpl corev1.PodTemplateSpec
		if err := sjson.UnmarshalCaseSensitivePreserveInts(raw, &tmpl); err != nil {
			return []error{fmt.Errorf("%s (%s): %s: %w", &h, where, strings.TrimPrefix(strings.ReplaceAll(path, "/", "."), "."), err)}
		}
		pod.ObjectMeta, pod.Spec = tmpl.ObjectMeta, tmpl.Spec
		// A template has no name: the webhook names the instance after the pods' controller,
		// which is (or leads to) the workload. Give the pod the workload as its controller, so
		// that inject.InstanceName, the one rule, names the instance after it.
		switch {
		case h.Metadata.Name != "":
			pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: h.APIVersion, Kind: h.Kind, Name: h.Metadata.Name, Controller: ptrTo(true)}}
		case h.Metadata.GenerateName != "":
			pod.OwnerReferences, pod.GenerateName = nil, h.Metadata.GenerateName
		}
	}
	if inject.SkipReason(pod) != "" {
		return nil // not labelled, or injected already: as the webhook, leave it
	}
	ns := h.Metadata.Namespace
	if ns == "" {
		ns = in.namespace
	}
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	out, err := in.injector.Inject(pod, ns)
	if err != nil {
		return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
	}
	patch, err := inject.Patch(pod, out)
	if err != nil {
		return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
	}
	if err := prefixPatch(patch, at+path, ops); err != nil {
		return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
	}
	if spec, err := inject.ParseAnnotations(pod.Annotations, in.kratosImage); err == nil {
		for _, w := range inject.Warnings(pod, spec) {
			in.warnings = append(in.warnings, fmt.Sprintf("%s (%s): %s", &h, where, w))
		}
	}
	return nil
}

// prefixPatch appends the operations of patch (on a pod) to ops, moved under pointer prefix
// (where the pod or template sits in the document).
func prefixPatch(patch []byte, prefix string, ops *[]json.RawMessage) error {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(patch, &list); err != nil {
		return err
	}
	for _, op := range list {
		var p string
		if err := json.Unmarshal(op["path"], &p); err != nil {
			return err
		}
		b, err := json.Marshal(prefix + p)
		if err != nil {
			return err
		}
		op["path"] = b
		enc, err := json.Marshal(op)
		if err != nil {
			return err
		}
		*ops = append(*ops, enc)
	}
	return nil
}

// rawAt returns the JSON value at pointer path ("" is the whole document), nil when absent.
func rawAt(js []byte, path string) json.RawMessage {
	cur := json.RawMessage(js)
	if path == "" {
		return cur
	}
	for _, key := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil {
			return nil
		}
		next, ok := m[key]
		if !ok || bytes.Equal(bytes.TrimSpace(next), []byte("null")) {
			return nil
		}
		cur = next
	}
	return cur
}

func ptrTo[T any](v T) *T { return &v }
