package config

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Every key of every Secret the render reads, set in turn to a hostile value, gives either a
// clear refusal (an InputError naming that Secret and key, on one line, not quoting the value)
// or a config of exactly the shape the valid inputs give: the value lands where it belongs and
// can add, remove or rename nothing in kratos.yaml, nor add a file. Never a panic.
func TestHostileSecretValues(t *testing.T) {
	base := validFixture()
	baseRes, err := Render(&base.spec, RenderOptions{InputDir: base.write(t), Rand: &fixedRand{}})
	if err != nil {
		t.Fatal(err)
	}
	baseShape := configShape(t, baseRes.Files[ConfigFile])
	baseFiles := fileNames(baseRes)

	hostile := map[string]string{
		"control characters":   "a\x00b\x07c\x1b[31md\x7f",
		"terminal escape":      "\x1b]0;title\x07\x1b[2J",
		"line breaks":          "first\nsecond: injected\n",
		"carriage return":      "value\rinjected: true",
		"1 MiB":                strings.Repeat("A", 1<<20),
		"YAML flow":            "{log: {level: trace}}",
		"YAML document":        "x\n---\nlog: {level: trace}",
		"YAML anchor and tag":  "&a !!binary *a",
		"YAML key":             "k: v",
		"JSON":                 `{"dsn": "memory", "x": [1]}`,
		"quotes":               `"'` + "`",
		"kubelet expansion":    "$(KUBERNETES_SERVICE_HOST)$$(HOME)$",
		"shell expansion":      "${HOME}$(id)`id`",
		"non-UTF-8":            "\xff\xfe\xfd",
		"jsonnet":              "std.native('x')",
		"URL specials":         "@:/?#%[]",
		"only spaces":          "   ",
		"unicode line sep":     "a\u2028b\u2029c",
		"NUL only":             "\x00",
		"BOM":                  "\ufeffvalue",
		"percent-encoded junk": "%zz%00%0a",
	}
	names := make([]string, 0, len(hostile))
	for n := range hostile {
		names = append(names, n)
	}
	sort.Strings(names)

	type target struct{ secret, key string }
	var targets []target
	for secret, keys := range base.secrets {
		for key := range keys {
			targets = append(targets, target{secret, key})
		}
	}
	// Keys the fixture does not use but the formats define (docs/annotations.md).
	targets = append(targets, target{"pg", "dsn"}, target{"pg", "uri"}, target{"smtp", "uri"},
		target{"smtp", "from_address"}, target{"smtp", "from_name"}, target{"smtp", "skip_ssl_verify"},
		target{"gh", "scope"}, target{"gh", "mapper_url"}, target{"sso", "auth_url"}, target{"sso", "label"})
	sort.Slice(targets, func(i, j int) bool {
		return targets[i].secret+"/"+targets[i].key < targets[j].secret+"/"+targets[j].key
	})

	// An optional key the fixture leaves out adds its own setting when present: the shape to
	// compare with is then the one a plain, valid value gives.
	plain := map[string]string{
		"pg/dsn": "postgres://kratos:pw@db:5432/kratos", "pg/uri": "postgres://kratos:pw@db:5432/kratos",
		"smtp/uri": "smtp://u:p@smtp.example.com:587/", "smtp/from_address": "a@example.com",
		"smtp/from_name": "Name", "smtp/skip_ssl_verify": "false", "gh/scope": "email",
		"gh/mapper_url": "https://example.com/m.jsonnet", "sso/auth_url": "https://sso.example.com/auth",
		"sso/label": "SSO",
	}
	shapes := map[string][][]string{}
	for _, tg := range targets {
		k := tg.secret + "/" + tg.key
		shapes[k] = [][]string{baseShape}
		if v, ok := plain[k]; ok {
			f := validFixture()
			f.secrets[tg.secret][tg.key] = v
			res, err := Render(&f.spec, RenderOptions{InputDir: f.write(t), Rand: &fixedRand{}})
			if err != nil {
				t.Fatalf("%s = %q: %v", k, v, err)
			}
			shapes[k] = append(shapes[k], configShape(t, res.Files[ConfigFile]))
		}
	}

	refused, accepted := 0, 0
	for _, tg := range targets {
		for _, hn := range names {
			hv := hostile[hn]
			t.Run(tg.secret+"/"+tg.key+"/"+hn, func(t *testing.T) {
				f := validFixture()
				f.secrets[tg.secret][tg.key] = hv
				res, err := renderNoPanic(t, f)
				if err != nil {
					refused++
					msg := err.Error()
					var ie *InputError
					if !errors.As(err, &ie) || ie.Name != tg.secret {
						t.Errorf("refusal does not name Secret %s: %v", tg.secret, err)
					}
					if strings.Count(msg, "\n") > 0 {
						t.Errorf("refusal is not one line: %q", msg)
					}
					if len(strings.TrimSpace(hv)) >= 4 && strings.Contains(msg, hv) {
						t.Errorf("refusal quotes the hostile value: %.200q", msg)
					}
					for _, s := range f.sensitive() {
						if strings.Contains(msg, s) {
							t.Errorf("refusal quotes a secret value of the fixture: %.200q", msg)
						}
					}
					return
				}
				accepted++
				got := configShape(t, res.Files[ConfigFile])
				if !slices.ContainsFunc(shapes[tg.secret+"/"+tg.key], func(s []string) bool { return slices.Equal(s, got) }) {
					t.Errorf("accepted, but kratos.yaml has another shape:\n%s", shapeDiff(baseShape, got))
				}
				// The provider id names its claims mapper's file: only the name may change.
				if got := fileNames(res); tg.key != "id" && !slices.Equal(got, baseFiles) {
					t.Errorf("accepted, but the rendered files are %v, want %v", got, baseFiles)
				}
			})
		}
	}
	t.Logf("%d Secret keys x %d hostile values: %d refused with a clear error, %d accepted into a config of the same shape",
		len(targets), len(names), refused, accepted)
}

func renderNoPanic(t *testing.T, f *fixture) (res *Result, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Render panicked: %v", r)
		}
	}()
	return Render(&f.spec, RenderOptions{InputDir: f.write(t), Rand: &fixedRand{}})
}

// configShape lists every key path of a YAML document (list items by index), sorted.
func configShape(t *testing.T, doc []byte) []string {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatalf("rendered kratos.yaml does not parse: %v", err)
	}
	var paths []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				p := prefix + "." + k
				paths = append(paths, p)
				walk(p, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
		}
	}
	walk("", v)
	sort.Strings(paths)
	return paths
}

func shapeDiff(want, got []string) string {
	var b strings.Builder
	for _, p := range want {
		if !slices.Contains(got, p) {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	for _, p := range got {
		if !slices.Contains(want, p) {
			fmt.Fprintf(&b, "  + %s\n", p)
		}
	}
	return b.String()
}

func fileNames(r *Result) []string {
	out := make([]string, 0, len(r.Files))
	for n := range r.Files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
