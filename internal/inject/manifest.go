package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Manifest is one input of InjectManifests: YAML or JSON documents, as a file or standard
// input holds them.
type Manifest struct {
	// Name says where the documents come from in messages: a file name, or "stdin".
	Name string
	Data []byte
}

// ManifestReport is what InjectManifests has to say besides its output.
type ManifestReport struct {
	// Warnings each name their object and where it is:
	// "Deployment shop (app.yaml, document 2): kratos-injector.io/smtp-secret is not set: ...".
	Warnings []string
}

// InjectManifests is Injector.InjectManifests with an Injector of opts.
func InjectManifests(w io.Writer, opts Options, manifests ...Manifest) (*ManifestReport, error) {
	return NewInjector(opts).InjectManifests(w, manifests...)
}

// InjectManifests writes the documents of manifests to w, in order and separated by "---",
// with Kratos injected as the webhook would inject the pods they lead to: Pods, and the pod
// templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs
// and CronJobs, also as items of a List, when they carry LabelInject "true". A template has no
// name, so its instance is named after the workload, as the webhook names it after the pods'
// controller.
//
// An injected document is re-encoded (keys sorted; of its comments, only those at its head are
// kept). Every other document, and a pod injected already, is written back byte for byte, so
// injecting the output again changes nothing; empty documents are dropped.
//
// When some object cannot be injected (its annotations are invalid, it clashes with the
// injection, a document is not YAML) the error names every such object and where it is, and
// nothing is written.
func (in *Injector) InjectManifests(w io.Writer, manifests ...Manifest) (*ManifestReport, error) {
	var docs []*manifestDoc
	for _, m := range manifests {
		n := 0
		for _, raw := range splitDocuments(m.Data) {
			if len(bytes.TrimSpace(raw)) == 0 {
				continue // nothing between two separators (or before the first): dropped
			}
			n++
			docs = append(docs, &manifestDoc{source: m.Name, index: n, raw: raw})
		}
	}

	mi := &manifestInjector{injector: in}
	var failed []error
	for _, d := range docs {
		failed = append(failed, mi.injectDoc(d)...)
	}
	switch len(failed) {
	case 0:
	case 1:
		return nil, failed[0]
	default:
		return nil, manifestErrors(failed)
	}

	var out bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(d.out)
		if !bytes.HasSuffix(d.out, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	// One write: a reader of w never sees half of the output.
	if _, err := w.Write(out.Bytes()); err != nil {
		return nil, fmt.Errorf("write the injected manifests: %w", err)
	}
	return &ManifestReport{Warnings: mi.warnings}, nil
}

// manifestErrors are the objects of InjectManifests' input that cannot be injected, more than
// one.
type manifestErrors []error

func (e manifestErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = "  " + err.Error()
	}
	return fmt.Sprintf("%d objects cannot be injected (nothing was written):\n%s", len(e), strings.Join(msgs, "\n"))
}

func (e manifestErrors) Unwrap() []error { return e }

// manifestDoc is one YAML document of the input.
type manifestDoc struct {
	source string // Manifest.Name
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

// manifestInjector injects the pods and pod templates of manifests with an Injector, collecting
// the warnings.
type manifestInjector struct {
	injector *Injector
	warnings []string
}

// objectHead is what identifies an object and where its pod template is.
type objectHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
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
func (mi *manifestInjector) injectDoc(d *manifestDoc) []error {
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
	if errs := mi.object(js, "", d.where(), &ops); len(errs) > 0 {
		return errs
	}
	if len(ops) == 0 {
		return nil
	}
	// The injections of the document's pods, as one JSON patch: what is not injected keeps its
	// values (unknown fields included), only the keys' order and the comments are lost.
	patch, err := json.Marshal(ops)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", d.where(), err)}
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
func (mi *manifestInjector) object(js []byte, at, where string, ops *[]json.RawMessage) []error {
	var h objectHead
	if err := json.Unmarshal(js, &h); err != nil {
		return []error{fmt.Errorf("%s: %w", where, err)}
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		var errs []error
		for i, item := range h.Items {
			itemAt := at + "/items/" + strconv.Itoa(i)
			errs = append(errs, mi.object(item, itemAt, fmt.Sprintf("%s, %s item %d", where, h.Kind, i+1), ops)...)
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
		// that InstanceName, the one rule, names the instance after it.
		switch {
		case h.Metadata.Name != "":
			pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: h.APIVersion, Kind: h.Kind, Name: h.Metadata.Name, Controller: ptr.To(true)}}
		case h.Metadata.GenerateName != "":
			pod.OwnerReferences, pod.GenerateName = nil, h.Metadata.GenerateName
		}
	}
	switch SkipReason(pod) {
	case ReasonNotLabelled:
		return nil // as the webhook, leave it
	case ReasonAlreadyInjected:
		// Left as it is, as the webhook leaves it; but unlike a pod at admission, a manifest
		// is edited after its injection, and keeping an old injection silently would hide that.
		msg, err := mi.injector.staleStatus(pod)
		if err != nil {
			return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
		}
		if msg != "" {
			mi.warnings = append(mi.warnings, fmt.Sprintf("%s (%s): %s", &h, where, msg))
		}
		return nil
	}
	res, err := mi.injector.Inject(pod)
	if err != nil {
		return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
	}
	patch, err := Patch(pod, res.Pod)
	if err != nil {
		return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
	}
	if err := prefixPatch(patch, at+path, ops); err != nil {
		return []error{fmt.Errorf("%s (%s): %w", &h, where, err)}
	}
	for _, w := range res.Warnings {
		mi.warnings = append(mi.warnings, fmt.Sprintf("%s (%s): %s", &h, where, w))
	}
	return nil
}

// staleStatus says why an injected pod's AnnotationStatus no longer matches its annotations:
// injecting them now would give another spec (the default Kratos image counts, as it is part of
// the spec), or none at all. It returns "" when they still match, or when the status records no
// spec hash to compare with.
func (in *Injector) staleStatus(pod *corev1.Pod) (string, error) {
	st, err := ParseStatus(pod.Annotations[AnnotationStatus])
	if err != nil || st.SpecHash == "" {
		return "", nil
	}
	// Only the injection undone, or the un-injected source, can be injected again: with the
	// status alone removed, the injected containers and volumes clash with a new injection.
	const redo = "the old injection is kept; to apply the new settings, inject the un-injected source again, or remove the " +
		AnnotationStatus + " annotation along with the injected kratos-* containers and volumes, then inject"
	spec, err := ParseAnnotations(pod.Annotations, in.opts.KratosImage)
	if err != nil {
		return fmt.Sprintf("injected already with spec %s, but its annotations are no longer valid (%v): %s", st.SpecHash, err, redo), nil
	}
	specJSON, err := spec.Marshal()
	if err != nil {
		return "", fmt.Errorf("compare with the injected spec: %w", err)
	}
	if h := specHash(specJSON); h != st.SpecHash {
		return fmt.Sprintf("injected already with spec %s, but its annotations now give spec %s: %s", st.SpecHash, h, redo), nil
	}
	return "", nil
}

// prefixPatch appends the operations of patch (on a pod) to ops, moved under pointer prefix
// (where the pod or template sits in the document).
func prefixPatch(patch []byte, prefix string, ops *[]json.RawMessage) error {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(patch, &list); err != nil {
		return fmt.Errorf("read the pod's patch: %w", err)
	}
	for _, op := range list {
		var p string
		if err := json.Unmarshal(op["path"], &p); err != nil {
			return fmt.Errorf("read the pod's patch: %w", err)
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
