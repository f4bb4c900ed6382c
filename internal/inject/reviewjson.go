package inject

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	sjson "sigs.k8s.io/json"
)

// reviewParser decodes an AdmissionReview's request and the part of its pod that the
// injection reads (admittedRequest) in one pass over the JSON, checking the rest as it skips
// it. Decoding the review was most of a review's CPU through sigs.k8s.io/json's reflection,
// which also scans the document twice (once to check it, once to decode it).
//
// It decodes what it accepts exactly as sigs.k8s.io/json's UnmarshalCaseSensitivePreserveInts
// (TestParseRequestAsSigsJSON, FuzzParseRequestAsSigsJSON), and accepts only what that
// accepts. It is narrower: anything unusual (a member twice in an object it decodes, a number
// with a fraction or exponent for an integer, nesting deeper than maxDepth...) stops it, ok
// false, and the caller falls back to admission.Webhook. The API server's reviews have none of
// these.
type reviewParser struct {
	b     []byte
	i     int
	ok    bool
	depth int
	// seen are the members read so far of the object being read at each depth (see mark).
	seen [maxDepth + 1]uint32
}

// maxDepth bounds the nesting the parser follows (sigs.k8s.io/json allows 10000).
const maxDepth = 200

func (p *reviewParser) fail() { p.ok = false }

// peek is the next byte after whitespace (0 at the end).
func (p *reviewParser) peek() byte {
	for p.i < len(p.b) {
		switch c := p.b[p.i]; c {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return c
		}
	}
	return 0
}

// expect consumes c, the next byte after whitespace.
func (p *reviewParser) expect(c byte) {
	if p.peek() != c {
		p.fail()
		return
	}
	p.i++
}

// literal consumes the literal lit (true, false or null) at p.i.
func (p *reviewParser) literal(lit string) {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		p.fail()
		return
	}
	p.i += len(lit)
}

// null consumes a null when one is next.
func (p *reviewParser) null() bool {
	if p.peek() != 'n' {
		return false
	}
	p.literal("null")
	return true
}

// more is the loop condition over an object's members or an array's elements, after the
// opening brace or bracket: it consumes the separator or the closing byte. n counts the
// items so far.
func (p *reviewParser) more(closing byte, n *int) bool {
	if !p.ok {
		return false
	}
	c := p.peek()
	if c == closing {
		p.i++
		return false
	}
	if *n > 0 {
		if c != ',' {
			p.fail()
			return false
		}
		p.i++
	}
	*n++
	return true
}

// open starts an object or array, counting the depth; close is called once its items are read.
func (p *reviewParser) open(c byte) bool {
	p.expect(c)
	if p.depth++; p.depth > maxDepth {
		p.fail()
	}
	return p.ok
}

func (p *reviewParser) close() { p.depth-- }

// text is the next string, unescaped: its content itself when it holds no escape and is
// valid UTF-8 (as the API server writes most), else as sigs.k8s.io/json unquotes it (escapes,
// and invalid UTF-8 replaced).
func (p *reviewParser) text() []byte {
	if p.peek() != '"' {
		p.fail()
		return nil
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			if s := p.b[p.i+1 : j]; utf8.Valid(s) {
				p.i = j + 1
				return s
			}
			return p.unquote()
		case c == '\\':
			return p.unquote()
		case c < 0x20:
			p.fail()
			return nil
		}
	}
	p.fail()
	return nil
}

// unquote reads the next string with sigs.k8s.io/json itself.
func (p *reviewParser) unquote() []byte {
	start := p.i
	p.skipString()
	var s string
	if !p.ok || sjson.UnmarshalCaseSensitivePreserveInts(p.b[start:p.i], &s) != nil {
		p.fail()
		return nil
	}
	return []byte(s)
}

// key reads an object member's name and the colon after it.
func (p *reviewParser) key() []byte {
	k := p.text()
	p.expect(':')
	return k
}

// str decodes a string; null leaves s unchanged.
func (p *reviewParser) str(s *string) {
	if p.null() {
		return
	}
	if v := p.text(); p.ok {
		*s = string(v)
	}
}

// boolean decodes a bool; null leaves b unchanged.
func (p *reviewParser) boolean(b *bool) {
	switch p.peek() {
	case 'n':
		p.literal("null")
	case 't':
		p.literal("true")
		*b = true
	case 'f':
		p.literal("false")
		*b = false
	default:
		p.fail()
	}
}

// boolPtr decodes a *bool; null sets nil.
func (p *reviewParser) boolPtr(b **bool) {
	if p.null() {
		*b = nil
		return
	}
	v := new(bool)
	p.boolean(v)
	*b = v
}

// integer decodes an integer of the given bits: only digits, as strconv.ParseInt reads them.
func (p *reviewParser) integer(bits int) (int64, bool) {
	num := p.number()
	if !p.ok || bytes.ContainsAny(num, ".eE") {
		p.fail()
		return 0, false
	}
	n, err := strconv.ParseInt(string(num), 10, bits)
	if err != nil {
		p.fail()
		return 0, false
	}
	return n, true
}

func (p *reviewParser) int32(v *int32) {
	if p.null() {
		return
	}
	if n, ok := p.integer(32); ok {
		*v = int32(n)
	}
}

func (p *reviewParser) int64Ptr(v **int64) {
	if p.null() {
		*v = nil
		return
	}
	if n, ok := p.integer(64); ok {
		*v = &n
	}
}

// number reads a JSON number.
func (p *reviewParser) number() []byte {
	p.peek()
	b, start, j := p.b, p.i, p.i
	digits := func() {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			p.fail()
		}
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		digits()
	default:
		p.fail()
		return nil
	}
	if j < len(b) && b[j] == '.' {
		j++
		digits()
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		digits()
	}
	p.i = j
	return b[start:j]
}

// skipString checks and skips a string, whatever it holds.
func (p *reviewParser) skipString() {
	if p.peek() != '"' {
		p.fail()
		return
	}
	b := p.b
	for j := p.i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			p.i = j + 1
			return
		case c < 0x20:
			p.fail()
			return
		case c == '\\':
			j++
			if j >= len(b) {
				p.fail()
				return
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					p.fail()
					return
				}
				for _, h := range b[j+1 : j+5] {
					if (h < '0' || h > '9') && (h < 'a' || h > 'f') && (h < 'A' || h > 'F') {
						p.fail()
						return
					}
				}
				j += 4
			default:
				p.fail()
				return
			}
		}
	}
	p.fail()
}

// skip checks and skips any value, returning it.
func (p *reviewParser) skip() []byte {
	c := p.peek()
	start := p.i
	switch c {
	case '{':
		if p.open('{') {
			for n := 0; p.more('}', &n); {
				p.skipString()
				p.expect(':')
				p.skip()
			}
			p.close()
		}
	case '[':
		if p.open('[') {
			for n := 0; p.more(']', &n); {
				p.skip()
			}
			p.close()
		}
	case '"':
		p.skipString()
	case 't':
		p.literal("true")
	case 'f':
		p.literal("false")
	case 'n':
		p.literal("null")
	default:
		p.number()
	}
	if !p.ok {
		return nil
	}
	return p.b[start:p.i]
}

// raw decodes a RawExtension as its UnmarshalJSON does: the value's bytes, copied; null leaves
// it unchanged.
func (p *reviewParser) raw(r *runtime.RawExtension) {
	if v := p.skip(); p.ok && !bytes.Equal(v, []byte("null")) {
		r.Raw = append(r.Raw[:0], v...)
	}
}

// mark marks member bit of the object being read as read, failing when it was already.
func (p *reviewParser) mark(bit uint) {
	if p.depth > maxDepth {
		return // failed already
	}
	if p.seen[p.depth]&(1<<bit) != 0 {
		p.fail()
	}
	p.seen[p.depth] |= 1 << bit
}

// strings decodes a []string; null sets nil, a null element "".
func (p *reviewParser) strings(s *[]string) {
	if p.null() {
		*s = nil
		return
	}
	if !p.open('[') {
		return
	}
	out := make([]string, 0, 4)
	for n := 0; p.more(']', &n); {
		var v string
		p.str(&v)
		out = append(out, v)
	}
	p.close()
	*s = out
}

// stringMap decodes a map[string]string into *m (made if nil, as encoding/json does); null sets
// nil, a null value "".
func (p *reviewParser) stringMap(m *map[string]string) {
	if p.null() {
		*m = nil
		return
	}
	if !p.open('{') {
		return
	}
	if *m == nil {
		*m = make(map[string]string, 8)
	}
	for n := 0; p.more('}', &n); {
		k := string(p.key())
		var v string
		p.str(&v)
		(*m)[k] = v
	}
	p.close()
}

// object reads the members of an object into a struct: member marks (mark) and decodes the
// value of each name it knows, so that a name twice fails, and returns false for a name it
// does not, whose value is then skipped. null leaves the struct unchanged.
func (p *reviewParser) object(member func(name []byte) bool) {
	if p.null() {
		return
	}
	if !p.open('{') {
		return
	}
	if p.depth <= maxDepth {
		p.seen[p.depth] = 0
	}
	for n := 0; p.more('}', &n); {
		if name := p.key(); p.ok && !member(name) {
			p.skip()
		}
	}
	p.close()
}

// array reads the elements of an array into a new slice through elem; null sets nil.
func reviewArray[T any](p *reviewParser, s *[]T, elem func(*T)) {
	if p.null() {
		*s = nil
		return
	}
	if !p.open('[') {
		return
	}
	out := make([]T, 0, 2)
	for n := 0; p.more(']', &n); {
		out = append(out, *new(T))
		elem(&out[len(out)-1])
	}
	p.close()
	*s = out
}

func (p *reviewParser) gvk(v *metav1.GroupVersionKind) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "group":
			p.mark(0)
			p.str(&v.Group)
		case "version":
			p.mark(1)
			p.str(&v.Version)
		case "kind":
			p.mark(2)
			p.str(&v.Kind)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) gvr(v *metav1.GroupVersionResource) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "group":
			p.mark(0)
			p.str(&v.Group)
		case "version":
			p.mark(1)
			p.str(&v.Version)
		case "resource":
			p.mark(2)
			p.str(&v.Resource)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) userInfo(v *authenticationv1.UserInfo) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "username":
			p.mark(0)
			p.str(&v.Username)
		case "uid":
			p.mark(1)
			p.str(&v.UID)
		case "groups":
			p.mark(2)
			p.strings(&v.Groups)
		case "extra":
			p.mark(3)
			if p.null() {
				v.Extra = nil
				return true
			}
			if !p.open('{') {
				return true
			}
			if v.Extra == nil {
				v.Extra = map[string]authenticationv1.ExtraValue{}
			}
			for n := 0; p.more('}', &n); {
				k := string(p.key())
				var vals []string
				p.strings(&vals)
				v.Extra[k] = vals
			}
			p.close()
		default:
			return false
		}
		return true
	})
}

// request decodes an admittedRequest.
func (p *reviewParser) request(r *admittedRequest) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "uid":
			p.mark(0)
			s := string(r.UID)
			p.str(&s)
			r.UID = types.UID(s)
		case "kind":
			p.mark(1)
			p.gvk(&r.Kind)
		case "resource":
			p.mark(2)
			p.gvr(&r.Resource)
		case "subResource":
			p.mark(3)
			p.str(&r.SubResource)
		case "requestKind":
			p.mark(4)
			if p.null() {
				r.RequestKind = nil
			} else {
				r.RequestKind = &metav1.GroupVersionKind{}
				p.gvk(r.RequestKind)
			}
		case "requestResource":
			p.mark(5)
			if p.null() {
				r.RequestResource = nil
			} else {
				r.RequestResource = &metav1.GroupVersionResource{}
				p.gvr(r.RequestResource)
			}
		case "requestSubResource":
			p.mark(6)
			p.str(&r.RequestSubResource)
		case "name":
			p.mark(7)
			p.str(&r.Name)
		case "namespace":
			p.mark(8)
			p.str(&r.Namespace)
		case "operation":
			p.mark(9)
			s := string(r.Operation)
			p.str(&s)
			r.Operation = admissionv1.Operation(s)
		case "userInfo":
			p.mark(10)
			p.userInfo(&r.UserInfo)
		case "object":
			p.mark(11)
			if p.null() {
				r.Object = nil
			} else {
				r.Object = &admittedPod{}
				p.pod(r.Object)
			}
		case "oldObject":
			p.mark(12)
			p.raw(&r.OldObject)
		case "dryRun":
			p.mark(13)
			p.boolPtr(&r.DryRun)
		case "options":
			p.mark(14)
			p.raw(&r.Options)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) pod(a *admittedPod) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "apiVersion":
			p.mark(0)
			p.str(&a.APIVersion)
		case "kind":
			p.mark(1)
			p.str(&a.Kind)
		case "metadata":
			p.mark(2)
			p.meta(&a.Metadata)
		case "spec":
			p.mark(3)
			p.spec(&a.Spec)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) meta(m *admittedMeta) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			p.mark(0)
			p.str(&m.Name)
		case "generateName":
			p.mark(1)
			p.str(&m.GenerateName)
		case "labels":
			p.mark(2)
			p.stringMap(&m.Labels)
		case "annotations":
			p.mark(3)
			p.stringMap(&m.Annotations)
		case "ownerReferences":
			p.mark(4)
			reviewArray(p, &m.OwnerReferences, p.ownerReference)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) ownerReference(o *metav1.OwnerReference) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "apiVersion":
			p.mark(0)
			p.str(&o.APIVersion)
		case "kind":
			p.mark(1)
			p.str(&o.Kind)
		case "name":
			p.mark(2)
			p.str(&o.Name)
		case "uid":
			p.mark(3)
			s := string(o.UID)
			p.str(&s)
			o.UID = types.UID(s)
		case "controller":
			p.mark(4)
			p.boolPtr(&o.Controller)
		case "blockOwnerDeletion":
			p.mark(5)
			p.boolPtr(&o.BlockOwnerDeletion)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) spec(s *admittedSpec) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "volumes":
			p.mark(0)
			reviewArray(p, &s.Volumes, func(v *admittedVolume) {
				p.object(func(name []byte) bool {
					if string(name) != "name" {
						return false
					}
					p.mark(0)
					p.str(&v.Name)
					return true
				})
			})
		case "initContainers":
			p.mark(1)
			reviewArray(p, &s.InitContainers, p.container)
		case "containers":
			p.mark(2)
			reviewArray(p, &s.Containers, p.container)
		case "restartPolicy":
			p.mark(3)
			v := string(s.RestartPolicy)
			p.str(&v)
			s.RestartPolicy = corev1.RestartPolicy(v)
		case "terminationGracePeriodSeconds":
			p.mark(4)
			p.int64Ptr(&s.TerminationGracePeriodSeconds)
		case "hostNetwork":
			p.mark(5)
			p.boolean(&s.HostNetwork)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) container(c *admittedContainer) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			p.mark(0)
			p.str(&c.Name)
		case "ports":
			p.mark(1)
			reviewArray(p, &c.Ports, p.port)
		default:
			return false
		}
		return true
	})
}

func (p *reviewParser) port(cp *corev1.ContainerPort) {
	p.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			p.mark(0)
			p.str(&cp.Name)
		case "hostPort":
			p.mark(1)
			p.int32(&cp.HostPort)
		case "containerPort":
			p.mark(2)
			p.int32(&cp.ContainerPort)
		case "protocol":
			p.mark(3)
			v := string(cp.Protocol)
			p.str(&v)
			cp.Protocol = corev1.Protocol(v)
		case "hostIP":
			p.mark(4)
			p.str(&cp.HostIP)
		default:
			return false
		}
		return true
	})
}

// parseRequest decodes the JSON of an AdmissionRequest (a whole document) as
// sigs.k8s.io/json's UnmarshalCaseSensitivePreserveInts decodes it into an admittedRequest,
// or returns false.
func parseRequest(b []byte) (*admittedRequest, bool) {
	p := &reviewParser{b: b, ok: true}
	r := &admittedRequest{}
	if p.peek() != '{' { // null, or not an object
		return nil, false
	}
	p.request(r)
	if p.peek(); !p.ok || p.i != len(b) {
		return nil, false
	}
	return r, true
}

// parseReview reads a review whose top-level object has exactly the members kind and
// apiVersion, plain strings, and request, an object, each once: it returns them, the request
// decoded as by parseRequest, or false.
func parseReview(b []byte) (apiVersion, kind string, req *admittedRequest, ok bool) {
	p := &reviewParser{b: b, ok: true}
	if !p.open('{') {
		return "", "", nil, false
	}
	for n := 0; p.more('}', &n); {
		switch name := p.key(); string(name) {
		case "apiVersion":
			p.mark(0)
			apiVersion = string(p.text())
		case "kind":
			p.mark(1)
			kind = string(p.text())
		case "request":
			p.mark(2)
			if p.peek() != '{' {
				p.fail()
				break
			}
			req = &admittedRequest{}
			p.request(req)
		default:
			p.fail()
		}
	}
	seen := p.seen[p.depth]
	p.close()
	if p.peek(); !p.ok || p.i != len(b) || seen != 7 {
		return "", "", nil, false
	}
	return apiVersion, kind, req, true
}
