package inject

import (
	"container/list"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// specCacheSize bounds the specs an Injector remembers: one per distinct set of settings
// (pods of one ReplicaSet share theirs), so a cluster's workloads fit many times over.
const specCacheSize = 256

// parsedSpec is what an Injector derives from a pod's settings alone.
type parsedSpec struct {
	spec     *config.Spec // never handed out: callers get a copy (cloneSpec)
	specJSON string
	// parts are the JSON of the injected containers and volumes, which depend on the spec and
	// the Injector's Options only (containers.go, volumes.go): set by the handler's first patch
	// for these settings, then reused by Patch instead of encoding them again.
	parts atomic.Pointer[encodedParts]
	// injected are the injected containers and volumes themselves, built from spec for the
	// handler's Inject (see Injector.inject) and shared, read-only, by its results.
	injected atomic.Pointer[injectedParts]
}

// specCache remembers, by the pod's settings, the valid spec ParseAnnotations made of them and
// its JSON, so the pods of one ReplicaSet are parsed and validated once rather than each time
// (parsing was a fifth of a review's CPU). ParseAnnotations reads nothing but the annotations
// under Prefix (every setting's name is there: TestSpecCacheKeyCoversSettings) and the
// Injector's Kratos image, fixed per Injector, so those annotations, exactly, are the key.
// Refusals are not cached: they are rare and their messages quote the pod's values.
type specCache struct {
	mu      sync.Mutex
	entries map[string]*list.Element // of *specEntry
	lru     list.List                // front: most recently used
}

type specEntry struct {
	key string
	val *parsedSpec
}

// specKey encodes the annotations under Prefix, sorted, each key and value length-prefixed so
// that no two different sets share a key.
func specKey(annotations map[string]string) string {
	keys := make([]string, 0, len(annotations))
	n := 0
	for k, v := range annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
			n += len(k) + len(v) + 4
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	for _, k := range keys {
		v := annotations[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return string(b)
}

func (c *specCache) get(key string) (*parsedSpec, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*specEntry).val, true
}

func (c *specCache) put(key string, val *parsedSpec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]*list.Element)
	}
	if e, ok := c.entries[key]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.entries[key] = c.lru.PushFront(&specEntry{key: key, val: val})
	if c.lru.Len() > specCacheSize {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*specEntry).key)
	}
}

// cloneSpec copies s deeply enough that the copy's owner cannot change s: its only references
// are string slices.
func cloneSpec(s *config.Spec) *config.Spec {
	c := *s
	c.IDPSecrets = slices.Clone(s.IDPSecrets)
	c.AllowedReturnURLs = slices.Clone(s.AllowedReturnURLs)
	c.CORSOrigins = slices.Clone(s.CORSOrigins)
	c.Features = slices.Clone(s.Features)
	return &c
}

// parse is ParseAnnotations(annotations, the Injector's Kratos image) with the spec's JSON and
// the cache entry, answered from the cache when these settings were parsed before.
func (in *Injector) parse(annotations map[string]string) (*config.Spec, *parsedSpec, error) {
	key := specKey(annotations)
	if p, ok := in.specs.get(key); ok {
		return cloneSpec(p.spec), p, nil
	}
	spec, err := ParseAnnotations(annotations, in.opts.KratosImage)
	if err != nil {
		return nil, nil, err
	}
	specJSON, err := spec.Marshal()
	if err != nil {
		return nil, nil, err
	}
	p := &parsedSpec{spec: cloneSpec(spec), specJSON: specJSON}
	in.specs.put(key, p)
	return spec, p, nil
}
