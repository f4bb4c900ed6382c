package config

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// builtin holds the identity schemas and claims mappers we ship (written for this project).
//
//go:embed builtin/schemas/*.json builtin/mappers/*.jsonnet
var builtin embed.FS

// Built-in identity schema ids. `default` is email + password; `admin` (username + email, both
// password identifiers, email for recovery and verification) is what `kubectl kratos identity
// create-admin` creates.
const (
	SchemaDefault = "default"
	SchemaAdmin   = "admin"
)

// BuiltinSchemas are the ids of the built-in schemas: the schemas Kratos gets when the spec
// names no schemas ConfigMap.
var BuiltinSchemas = []string{SchemaDefault, SchemaAdmin}

// schemaFile is where the schema id is written, relative to the config dir.
func schemaFile(id string) string { return path.Join("schemas", id+".schema.json") }

// BuiltinSchema returns the embedded schema id (SchemaDefault or SchemaAdmin): what an injected
// Kratos serves unless the pod names a schemas ConfigMap.
func BuiltinSchema(id string) []byte {
	b, err := builtin.ReadFile("builtin/schemas/" + id + ".schema.json")
	if err != nil {
		panic(fmt.Sprintf("built-in schema %s: %v", id, err)) // embedded at build time
	}
	return b
}

// identity renders identity: the built-in schemas, or those of the ConfigMap (one key <id>.json
// each) plus the built-in admin schema unless the ConfigMap defines its own `admin`, so that the
// plugin's create-admin always has its schema. Each schema is written to schemas/<id>.schema.json
// and referenced by an absolute file:// URL.
func (r *renderer) identity() (Identity, error) {
	schemas := map[string][]byte{}
	if r.spec.IdentitySchemas == "" {
		for _, id := range BuiltinSchemas {
			schemas[id] = BuiltinSchema(id)
		}
	} else {
		cm, err := r.openConfigMap(r.spec.IdentitySchemas)
		if err != nil {
			return Identity{}, err
		}
		if err := readSchemas(cm, schemas); err != nil {
			return Identity{}, err
		}
		if _, ok := schemas[r.spec.DefaultSchema]; !ok {
			return Identity{}, cm.failf(r.spec.DefaultSchema+".json",
				"missing, and %q is the default schema (kratos-injector.io/default-schema); add the key or set the default to one of: %s",
				r.spec.DefaultSchema, strings.Join(sortedKeys(schemas), ", "))
		}
		if _, ok := schemas[SchemaAdmin]; !ok {
			schemas[SchemaAdmin] = BuiltinSchema(SchemaAdmin)
		}
	}
	if _, ok := schemas[r.spec.DefaultSchema]; !ok {
		return Identity{}, fmt.Errorf("default schema %q is not built in (built-ins: %s); set kratos-injector.io/default-schema to one of them, or kratos-injector.io/identity-schemas to a ConfigMap with key %s.json",
			r.spec.DefaultSchema, strings.Join(sortedKeys(schemas), ", "), r.spec.DefaultSchema)
	}

	out := Identity{DefaultSchemaID: r.spec.DefaultSchema}
	for _, id := range sortedKeys(schemas) {
		f := schemaFile(id)
		r.files[f] = schemas[id]
		out.Schemas = append(out.Schemas, IdentitySchema{ID: id, URL: r.fileURL(f)})
	}
	return out, nil
}

// readSchemas reads every key of the schemas ConfigMap into schemas, by id.
func readSchemas(cm *source, schemas map[string][]byte) error {
	keys, err := cm.keys()
	if err != nil {
		return err
	}
	for _, key := range keys {
		id, ok := strings.CutSuffix(key, ".json")
		if !ok || !schemaIDPattern.MatchString(id) {
			return cm.fail(key, "not a schema key; name each key <id>.json (id: letters, digits, '.', '_', '-')")
		}
		b, _, err := cm.raw(key)
		if err != nil {
			return err
		}
		if problem := jsonObjectProblem(b); problem != "" {
			return cm.fail(key, problem)
		}
		schemas[id] = b
	}
	return nil
}

// jsonObjectProblem says why b is not a JSON object ("" when it is), with the line and column.
func jsonObjectProblem(b []byte) string {
	var v any
	err := json.Unmarshal(b, &v)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		line, col := lineCol(b, se.Offset)
		return fmt.Sprintf("not valid JSON at line %d, column %d: %v", line, col, se)
	case err != nil:
		return fmt.Sprintf("not valid JSON: %v", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return "not a JSON object"
	}
	return ""
}

// lineCol turns a byte offset into 1-based line and column.
func lineCol(b []byte, offset int64) (line, col int) {
	if offset > int64(len(b)) {
		offset = int64(len(b))
	}
	before := b[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slices.Clip(keys)
}
