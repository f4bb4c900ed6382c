package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/jsonpath"
)

// kubectl's -o custom-columns=HEADER:JSONPATH,... and -o custom-columns-file=FILE (a line of
// headers, then a line of JSONPath expressions, whitespace-separated), with kubectl's relaxed
// JSONPath ({.a.b}, .a.b and a.b alike), one row per object (per item of a List), several
// values joined with commas and a missing one shown as <none>. Cells are escaped as in every
// table of the plugin: a trait cannot reach the terminal as a control sequence.

type column struct {
	header string
	path   *jsonpath.JSONPath
}

// customColumns returns the spec of -o custom-columns=SPEC or the file of
// -o custom-columns-file=FILE.
func (o *outputFlags) customColumns() (spec, file string, ok bool) {
	if s, found := strings.CutPrefix(o.Format, customColumns+"="); found {
		return s, "", true
	}
	if f, found := strings.CutPrefix(o.Format, customColumnsFile+"="); found {
		return "", f, true
	}
	return "", "", false
}

func (o *outputFlags) columns() ([]column, error) {
	spec, file, _ := o.customColumns()
	var headers, paths []string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-o %s=%s: %w", customColumnsFile, file, err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 {
			return nil, fmt.Errorf("-o %s=%s: want two lines (headers, then JSONPath expressions), got %d", customColumnsFile, file, len(lines))
		}
		headers, paths = strings.Fields(lines[0]), strings.Fields(lines[1])
		if len(headers) != len(paths) {
			return nil, fmt.Errorf("-o %s=%s: %d headers for %d expressions", customColumnsFile, file, len(headers), len(paths))
		}
	} else {
		if spec == "" {
			return nil, errors.New("-o custom-columns=: want HEADER:JSONPATH[,HEADER:JSONPATH...]")
		}
		for _, part := range strings.Split(spec, ",") {
			h, p, ok := strings.Cut(part, ":")
			if !ok || h == "" || p == "" {
				return nil, fmt.Errorf("-o custom-columns: %q is not HEADER:JSONPATH", part)
			}
			headers, paths = append(headers, h), append(paths, p)
		}
	}
	cols := make([]column, 0, len(headers))
	for i, h := range headers {
		expr, err := relaxedJSONPath(paths[i])
		if err != nil {
			return nil, fmt.Errorf("-o custom-columns: column %s: %w", h, err)
		}
		jp := jsonpath.New(h).AllowMissingKeys(true)
		if err := jp.Parse(expr); err != nil {
			return nil, fmt.Errorf("-o custom-columns: column %s: %w", h, err)
		}
		cols = append(cols, column{header: h, path: jp})
	}
	return cols, nil
}

// relaxedJSONPath is kubectl's RelaxedJSONPathExpression: "{.a.b}", ".a.b" and "a.b" are the
// same expression.
func relaxedJSONPath(p string) (string, error) {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, "{") != strings.HasSuffix(p, "}") {
		return "", fmt.Errorf("unbalanced braces in %q", p)
	}
	p = strings.TrimSuffix(strings.TrimPrefix(p, "{"), "}")
	if p == "" {
		return "", errors.New("empty JSONPath")
	}
	if !strings.HasPrefix(p, ".") {
		p = "." + p
	}
	return "{" + p + "}", nil
}

func (o *outputFlags) printColumns(w io.Writer, cols []column, obj runtime.Object) error {
	objs := []runtime.Object{obj}
	if meta.IsListType(obj) {
		var err error
		if objs, err = meta.ExtractList(obj); err != nil {
			return err
		}
	}
	headers := make([]string, 0, len(cols))
	for _, c := range cols {
		headers = append(headers, c.header)
	}
	rows := make([][]string, 0, len(objs))
	for _, ob := range objs {
		u, ok := ob.(runtime.Unstructured)
		if !ok {
			return fmt.Errorf("custom-columns: %T is not an unstructured object", ob)
		}
		content := u.UnstructuredContent()
		row := make([]string, 0, len(cols))
		for _, c := range cols {
			results, err := c.path.FindResults(content)
			if err != nil {
				return fmt.Errorf("custom-columns: column %s: %w", c.header, err)
			}
			var vals []string
			for _, rs := range results {
				for _, r := range rs {
					if !r.IsValid() || (r.Kind() == reflect.Interface && r.IsNil()) {
						continue
					}
					var b bytes.Buffer
					if err := c.path.PrintResults(&b, []reflect.Value{r}); err != nil {
						return fmt.Errorf("custom-columns: column %s: %w", c.header, err)
					}
					vals = append(vals, b.String())
				}
			}
			if len(vals) == 0 {
				row = append(row, "<none>")
				continue
			}
			row = append(row, strings.Join(vals, ","))
		}
		rows = append(rows, row)
	}
	return o.printTable(w, headers, rows)
}
