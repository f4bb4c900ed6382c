package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Patch returns the JSON patch (RFC 6902) that turns in into out, where out is Inject's result
// for in.
//
// It reads the difference off Inject's output (our containers prepended, our volumes appended,
// our labels and annotations set), so the decisions stay in Inject; the handler's tests check
// that the patch applied to the raw pod equals Inject's output. Two reasons not to diff two
// serialized pods (admission.PatchResponseFromRaw) instead: the diff was 80% of the admission's
// CPU time (137 µs against 30 µs here), and a field the API server sends but this build's
// k8s.io/api does not know would be missing from the re-serialized pod, so the diff would
// remove it. This patch only ever adds, and never touches the app's containers.
func Patch(in, out *corev1.Pod) ([]byte, error) { return patchWith(in, out, nil) }

// encodedParts are the JSON (as json.Marshal writes it) of each injected init container,
// container and volume, in the order Inject adds them.
type encodedParts struct {
	init, main, vols [][]byte
	// preStop is the Kratos container's preStop sleep these parts hold: it follows the pod's
	// terminationGracePeriodSeconds, the one input besides the settings (the pods of one
	// ReplicaSet share it).
	preStop int64
}

func marshalEach[T any](items []T) ([][]byte, error) {
	out := make([][]byte, len(items))
	for i := range items {
		b, err := json.Marshal(&items[i])
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// patchWith is Patch reusing the JSON of the injected containers and volumes kept in parsed,
// the cache entry of the pod's settings (nil: encode them): they depend on the settings and
// the Injector's Options only, so every pod of a ReplicaSet gets the same bytes. The first
// patch for an entry stores them there. The output is Patch's, byte for byte
// (TestHandleResponsePinned, TestPatchWithCachedParts).
func patchWith(in, out *corev1.Pod, parsed *parsedSpec) ([]byte, error) {
	nInit := len(out.Spec.InitContainers) - len(in.Spec.InitContainers)
	nMain := len(out.Spec.Containers) - len(in.Spec.Containers)
	nVol := len(out.Spec.Volumes) - len(in.Spec.Volumes)
	if nInit < 0 || nMain < 0 || nVol < 0 {
		return nil, fmt.Errorf("patch: the injected pod has fewer containers or volumes than the original")
	}
	initAdded, mainAdded, volsAdded := out.Spec.InitContainers[:nInit], out.Spec.Containers[:nMain], out.Spec.Volumes[len(in.Spec.Volumes):]
	var parts *encodedParts
	if parsed != nil {
		parts = parsed.parts.Load()
		if parts != nil && (len(parts.init) != nInit || len(parts.main) != nMain || len(parts.vols) != nVol ||
			parts.preStop != preStopSleep(in.Spec.TerminationGracePeriodSeconds)) {
			parts = nil // not Inject's output for these settings and this grace period: encode
		}
	}
	if parts == nil {
		var p encodedParts
		var errs [3]error
		p.init, errs[0] = marshalEach(initAdded)
		p.main, errs[1] = marshalEach(mainAdded)
		p.vols, errs[2] = marshalEach(volsAdded)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("patch: %w", err)
		}
		p.preStop = preStopSleep(in.Spec.TerminationGracePeriodSeconds)
		parts = &p
		if parsed != nil {
			parsed.parts.Store(parts)
		}
	}
	w := &patchWriter{}
	if b, ok := patchBuffers.Get().(*[]byte); ok {
		w.buf = *bytes.NewBuffer((*b)[:0])
	} else {
		w.buf.Grow(8192)
	}
	w.enc = json.NewEncoder(&w.buf)
	w.buf.WriteByte('[')
	w.prependRaw("/spec/initContainers", len(in.Spec.InitContainers), parts.init)
	w.prependRaw("/spec/containers", len(in.Spec.Containers), parts.main)
	w.appendRaw("/spec/volumes", len(in.Spec.Volumes), parts.vols)
	w.maps("/metadata/labels", in.Labels, out.Labels)
	w.maps("/metadata/annotations", in.Annotations, out.Annotations)
	w.buf.WriteByte(']')
	if w.err != nil {
		return nil, fmt.Errorf("patch: %w", w.err)
	}
	return w.buf.Bytes(), nil
}

// patchBuffers are the buffers of patches already sent: Webhook hands back its responses'
// once written (releasePatch), since a patch is a few kilobytes per review; other callers'
// patches are theirs to keep.
var patchBuffers sync.Pool

// releasePatch gives the buffer of p, a patch from patchWith that nothing refers to any more,
// to the next patch.
func releasePatch(p []byte) {
	if cap(p) > 0 && cap(p) <= 64<<10 {
		p = p[:0]
		patchBuffers.Put(&p)
	}
}

// patchWriter writes "add" operations straight into one buffer: marshalling a slice of
// jsonpatch.Operation would encode every value twice (its MarshalJSON, then a compaction).
type patchWriter struct {
	buf bytes.Buffer
	enc *json.Encoder
	n   int
	err error
}

// add writes {"op":"add","path":path,"value":value}; path holds only JSON-safe characters
// (our constant keys, escaped by escapePointer, and indices).
func (w *patchWriter) add(path string, value any) {
	if w.n > 0 {
		w.buf.WriteByte(',')
	}
	w.n++
	w.buf.WriteString(`{"op":"add","path":"`)
	w.buf.WriteString(path)
	w.buf.WriteString(`","value":`)
	if err := w.enc.Encode(value); err != nil && w.err == nil {
		w.err = err
	}
	w.buf.WriteByte('}')
}

// addRaw is add for a value already encoded, as one JSON value or, with array, as the items
// of an array; it writes what add writes for the same value (json.Encoder ends it with a
// newline).
func (w *patchWriter) addRaw(path string, items [][]byte, array bool) {
	if w.n > 0 {
		w.buf.WriteByte(',')
	}
	w.n++
	w.buf.WriteString(`{"op":"add","path":"`)
	w.buf.WriteString(path)
	w.buf.WriteString(`","value":`)
	if array {
		w.buf.WriteByte('[')
	}
	for i, item := range items {
		if i > 0 {
			w.buf.WriteByte(',')
		}
		w.buf.Write(item)
	}
	if array {
		w.buf.WriteByte(']')
	}
	w.buf.WriteString("\n}")
}

// prependRaw adds the encoded ours before the existing n elements of the array at path (JSON
// patch "add" at an index inserts), or creates the array when there is none.
func (w *patchWriter) prependRaw(path string, n int, ours [][]byte) {
	if len(ours) == 0 {
		return
	}
	if n == 0 {
		w.addRaw(path, ours, true)
		return
	}
	for i := range ours {
		w.addRaw(path+"/"+strconv.Itoa(i), ours[i:i+1], false)
	}
}

// appendRaw appends encoded volumes to the array at path, or creates it when there is none.
func (w *patchWriter) appendRaw(path string, n int, ours [][]byte) {
	if len(ours) == 0 {
		return
	}
	if n == 0 {
		w.addRaw(path, ours, true)
		return
	}
	for i := range ours {
		w.addRaw(path+"/-", ours[i:i+1], false)
	}
}

// maps sets the keys of out that in lacks or holds with another value.
func (w *patchWriter) maps(path string, in, out map[string]string) {
	if len(in) == 0 {
		// The API server sends no map (or null, or {}) for an empty one: add it whole.
		if len(out) > 0 {
			w.add(path, out)
		}
		return
	}
	// In key order, so that the same pod always gets the same bytes (Go's map order is random).
	var changed [4]string
	keys := changed[:0]
	for k, v := range out {
		if old, ok := in[k]; !ok || old != v {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w.add(path+"/"+escapePointer(k), out[k])
	}
}

// escapePointer escapes a JSON pointer token (RFC 6901) and keeps it JSON-safe. Label and
// annotation keys are [-._a-zA-Z0-9/], so only '/' ever needs escaping; anything else is
// quoted by the encoder to stay valid JSON whatever the key.
func escapePointer(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s)
			return string(b[1 : len(b)-1])
		}
	}
	return s
}
