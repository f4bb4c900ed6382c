package main

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// annotationsDoc is docs/annotations.md: every key of inject.Annotations, then the formats of
// the Secrets and ConfigMaps they name.
func annotationsDoc() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, generatedHeader, "internal/inject/annotations.go (inject.Annotations) and hack/gendocs/secrets.go")
	b.WriteString("# Annotations and Secret formats\n\n")
	fmt.Fprintf(&b, "A pod (template) opts in with the label `%s: \"true\"`; its settings are annotations under `%s`. "+
		"An unknown key under the prefix, or a bad value, makes the webhook deny the pod with a message naming every problem "+
		"(`kubectl kratos inject -f` fails with the same message); nothing is half-applied.\n\n", inject.LabelInject, inject.Prefix)

	b.WriteString("## Settings (annotations)\n\n")
	b.WriteString("| Annotation | Default | Values | Description |\n|---|---|---|---|\n")
	for _, d := range inject.Annotations {
		if d.Kind != inject.KindSetting {
			continue
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, cell(d.Default), values(d), cell(d.Doc))
	}

	b.WriteString("\n## Labels\n\n")
	b.WriteString("| Key | Set by | Default | Values | Description |\n|---|---|---|---|---|\n")
	for _, d := range inject.Annotations {
		by := ""
		switch d.Kind {
		case inject.KindLabel:
			by = "you (label)"
		case inject.KindOutput:
			by = "the injector"
		default:
			continue
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", d.Name, by, cell(d.Default), values(d), cell(d.Doc))
	}

	ex, err := exampleTemplate()
	if err != nil {
		return nil, err
	}
	b.WriteString("\n## Example\n\nA Deployment whose pod template sets every setting (each annotation's documented example value):\n\n```yaml\n")
	b.Write(ex)
	b.WriteString("```\n")

	b.WriteString("\n## Secret and ConfigMap formats\n\n")
	b.WriteString("A missing Secret, ConfigMap or key fails the pod's `kratos-config` init container with one line naming the object and the key " +
		"(its termination message, shown by `kubectl kratos status` and the pod's events). Values never appear in the pod spec, annotations, logs or errors. " +
		"A key's value may end with one newline (as `kubectl create secret --from-file` leaves it); it is ignored.\n")
	for _, f := range objectFormats {
		fmt.Fprintf(&b, "\n### %s: the %s named by `%s`\n\n%s\n\n", f.Title, f.Kind, f.Annotation, cell(f.Intro))
		b.WriteString("| Key | Use | Description |\n|---|---|---|\n")
		for _, k := range f.Keys {
			keys := "`" + k.Key + "`"
			for _, a := range k.Alt {
				keys += " or `" + a + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(keys), cell(k.Use), cell(k.Doc))
		}
		ex, err := exampleObject(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\nExample:\n\n```yaml\n%s```\n", ex)
	}
	return b.Bytes(), nil
}

// values renders the accepted values of an enumeration or list.
func values(d inject.AnnotationDef) string {
	if len(d.Values) == 0 {
		return ""
	}
	return codeList(d.Values)
}

func codeList(v []string) string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = "`" + s + "`"
	}
	return strings.Join(out, ", ")
}

// cell escapes text for a Markdown table cell: pipes, and angle brackets that would read as HTML.
// Text between backticks is left alone (code spans show < and > as they are).
func cell(s string) string {
	var b strings.Builder
	code := false
	for _, r := range s {
		switch {
		case r == '`':
			code = !code
			b.WriteRune(r)
		case r == '|':
			b.WriteString(`\|`)
		case !code && r == '<':
			b.WriteString("&lt;")
		case !code && r == '>':
			b.WriteString("&gt;")
		case r == '\n':
			b.WriteRune(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// exampleAnnotations are every setting's documented example.
func exampleAnnotations() map[string]string {
	ann := map[string]string{}
	for _, d := range inject.Annotations {
		if d.Kind == inject.KindSetting {
			ann[d.Name] = d.Example
		}
	}
	return ann
}

func exampleTemplate() ([]byte, error) {
	labels := map[string]string{"app": "my-app"}
	d := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]string{"name": "my-app"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{
					"labels":      map[string]string{"app": "my-app", inject.LabelInject: "true"},
					"annotations": exampleAnnotations(),
				},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "registry.example.com/my-app:1"}}},
			},
		},
	}
	return yaml.Marshal(d)
}

func exampleObject(f objectFormat) ([]byte, error) {
	name := strings.ToLower(strings.ReplaceAll(f.Title, " ", "-"))
	obj := map[string]any{"apiVersion": "v1", "kind": f.Kind, "metadata": map[string]string{"name": name}}
	field := "data"
	if f.Kind == "Secret" {
		field = "stringData"
	}
	obj[field] = f.Example
	return yaml.Marshal(obj)
}
