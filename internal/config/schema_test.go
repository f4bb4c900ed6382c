package config

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-jsonnet"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// kratosConfigSchema compiles Kratos v1.3.1's own config schema (testdata/kratos-v1.3.1). Its one
// external reference, the tracing config of ory/x, is replaced by an open schema: we render no
// tracing.
func kratosConfigSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	if err := c.AddResource("ory://tracing-config", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("testdata/kratos-v1.3.1/config.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlDoc decodes YAML into the generic value the validator takes.
func yamlDoc(t *testing.T, b []byte) any {
	t.Helper()
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestRenderedConfigsMatchKratosSchema: every golden case renders a kratos.yaml that Kratos
// v1.3.1's config schema accepts, and every file:// URL in it is a file the render produced.
func TestRenderedConfigsMatchKratosSchema(t *testing.T) {
	schema := kratosConfigSchema(t)
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			res := renderCase(t, name)
			if err := schema.Validate(yamlDoc(t, res.Files[ConfigFile])); err != nil {
				t.Errorf("kratos.yaml does not match Kratos v1.3.1's config schema:\n%v", err)
			}
			for _, line := range strings.Split(string(res.Files[ConfigFile]), "\n") {
				_, u, ok := strings.Cut(line, "file://"+DefaultConfigDir+"/")
				if !ok {
					continue
				}
				if _, ok := res.Files[strings.TrimSpace(u)]; !ok {
					t.Errorf("kratos.yaml refers to %s, which was not rendered", u)
				}
			}
			for rel, b := range res.Files {
				if strings.HasSuffix(rel, ".json") && !json.Valid(b) {
					t.Errorf("%s is not valid JSON", rel)
				}
			}
		})
	}
}

// TestSchemaCatchesBadConfig proves the schema test above can fail.
func TestSchemaCatchesBadConfig(t *testing.T) {
	schema := kratosConfigSchema(t)
	bad := "dsn: memory\nidentity: {schemas: [{id: default, url: 'file:///x'}]}\n" +
		"selfservice: {default_browser_return_url: 'http://x/'}\nsecrets: {cipher: [short]}\n"
	if err := schema.Validate(yamlDoc(t, []byte(bad))); err == nil {
		t.Fatal("a 5-character cipher passed the schema")
	}
}

// evalMapper runs a claims mapper as Kratos v1.3.1 does (go-jsonnet, the claims as ext code
// "claims"; Kratos omits empty claims, so absent keys are tested too).
func evalMapper(t *testing.T, src []byte, claims map[string]any) map[string]any {
	t.Helper()
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	vm := jsonnet.MakeVM()
	vm.ExtCode("claims", string(c))
	out, err := vm.EvaluateAnonymousSnippet("mapper.jsonnet", string(src))
	if err != nil {
		t.Fatalf("evaluate mapper: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuiltinMappers(t *testing.T) {
	// The identity the mapper produces must fit the built-in default schema.
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(BuiltinSchema(SchemaDefault)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("default.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	defaultSchema, err := c.Compile("default.schema.json")
	if err != nil {
		t.Fatal(err)
	}

	verified := []any{map[string]any{"via": "email", "value": "ada@example.com"}}
	for _, tc := range []struct {
		provider string
		claims   map[string]any
		want     map[string]any // the mapper's identity
	}{
		{"generic", map[string]any{"sub": "1", "email": "ada@example.com", "email_verified": true, "name": "Ada"},
			map[string]any{"traits": map[string]any{"email": "ada@example.com", "name": "Ada"}, "verified_addresses": verified}},
		{"google", map[string]any{"sub": "1", "email": "ada@example.com"}, // email_verified false: omitted by Kratos
			map[string]any{"traits": map[string]any{}}},
		{"gitlab", map[string]any{"sub": "1"},
			map[string]any{"traits": map[string]any{}}},
		{"github", map[string]any{"sub": "1", "email": "ada@example.com", "email_verified": true, "nickname": "ada"},
			map[string]any{"traits": map[string]any{"email": "ada@example.com", "name": "ada"}, "verified_addresses": verified}},
		{"github", map[string]any{"sub": "1", "name": "Ada L", "nickname": "ada"},
			map[string]any{"traits": map[string]any{"name": "Ada L"}}},
		{"microsoft", map[string]any{"sub": "1", "email": "ada@example.com", "name": "Ada"},
			map[string]any{"traits": map[string]any{"email": "ada@example.com", "name": "Ada"}}},
		{"apple", map[string]any{"sub": "1", "email": "ada@example.com", "email_verified": true},
			map[string]any{"traits": map[string]any{"email": "ada@example.com"}, "verified_addresses": verified}},
	} {
		got := evalMapper(t, builtinMapper(tc.provider), tc.claims)
		if diff := cmp.Diff(map[string]any{"identity": tc.want}, got); diff != "" {
			t.Errorf("%s mapper, claims %v (-want +got):\n%s", tc.provider, tc.claims, diff)
		}
		traits := got["identity"].(map[string]any)["traits"].(map[string]any)
		if _, ok := traits["email"]; ok {
			if err := defaultSchema.Validate(map[string]any{"traits": traits}); err != nil {
				t.Errorf("%s mapper output does not fit the default schema: %v", tc.provider, err)
			}
		}
	}
}

// TestGoldenMappersEvaluate: the custom mapper of a golden case is valid jsonnet too.
func TestGoldenMappersEvaluate(t *testing.T) {
	src, err := os.ReadFile("testdata/cnpg-smtp-idps/inputs/secrets/corp-sso/mapper")
	if err != nil {
		t.Fatal(err)
	}
	got := evalMapper(t, src, map[string]any{"sub": "1", "email": "ada@example.com"})
	if got["identity"].(map[string]any)["traits"].(map[string]any)["email"] != "ada@example.com" {
		t.Errorf("unexpected mapper output %v", got)
	}
}
