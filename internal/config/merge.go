package config

import (
	"bytes"
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// OverlayKey is the key of the config ConfigMap (kratos-injector.io/config) that is merged last.
const OverlayKey = "kratos.yaml"

// toTree turns a value into the generic JSON tree the overlay merges into. Numbers stay
// json.Number so that integers survive unchanged.
func toTree(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return decodeTree(b)
}

func decodeTree(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// overlay reads the config ConfigMap's kratos.yaml into a tree (nil when the spec names none).
func (r *renderer) overlay() (map[string]any, error) {
	if r.spec.ConfigOverlay == "" {
		return nil, nil
	}
	cm, err := r.openConfigMap(r.spec.ConfigOverlay)
	if err != nil {
		return nil, err
	}
	b, ok, err := cm.raw(OverlayKey)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, cm.fail(OverlayKey, "missing; put the Kratos config to merge over the rendered one there")
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, cm.failf(OverlayKey, "not valid YAML: %v", err)
	}
	if string(bytes.TrimSpace(j)) == "null" { // an empty file merges nothing
		return nil, nil
	}
	m, err := decodeTree(j)
	if err != nil {
		return nil, cm.fail(OverlayKey, "not a YAML mapping; write Kratos config keys at the top level (e.g. `log: {level: debug}`)")
	}
	return m, nil
}

// deepMerge merges over into base and returns base: mappings merge key by key, recursively; any
// other value (scalar, list) replaces; a null deletes the key, as in a JSON merge patch (RFC 7396),
// which is how an overlay removes something the renderer set.
func deepMerge(base, over map[string]any) map[string]any {
	for k, ov := range over {
		if ov == nil {
			delete(base, k)
			continue
		}
		om, oIsMap := ov.(map[string]any)
		bm, bIsMap := base[k].(map[string]any)
		if oIsMap && bIsMap {
			base[k] = deepMerge(bm, om)
			continue
		}
		if oIsMap {
			// Nulls inside a new mapping delete nothing and must not reach Kratos as nulls.
			base[k] = deepMerge(map[string]any{}, om)
			continue
		}
		base[k] = ov
	}
	return base
}
