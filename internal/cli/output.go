package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	client "github.com/ory/kratos-client-go"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Output formats.
const (
	formatTable = "table" // the default, also spelled ""
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"

	customColumns     = "custom-columns"
	customColumnsFile = "custom-columns-file"
)

// outputFlags are -o, --no-headers and, for commands that print objects, cli-runtime's printers
// (kubectl's -o name, jsonpath=, jsonpath-file=, jsonpath-as-json=, go-template=,
// go-template-file=, --template, --allow-missing-template-keys) and custom-columns.
//
// JSON and YAML are written by printStructured rather than by cli-runtime's printers (same
// layout: four-space indented JSON, sigs.k8s.io/yaml), because those would either write DEL and
// the C1 controls raw (JSON) or refuse them (YAML); tables and custom columns escape each cell;
// the template printers' output goes through Main's terminal writer like everything else.
type outputFlags struct {
	Format    string
	NoHeaders bool
	wide      bool // whether "wide" is offered
	objects   bool // whether the command prints objects (PrintFlags, custom-columns)
	print     *genericclioptions.PrintFlags
}

// add offers table, json and yaml (and wide): for commands that print a result, not objects.
func (o *outputFlags) add(cmd *cobra.Command, wide bool) {
	o.wide = wide
	o.Format = formatTable
	cmd.Flags().StringVarP(&o.Format, "output", "o", o.Format, "output format: "+strings.Join(o.formats(), "|"))
	cmd.Flags().BoolVar(&o.NoHeaders, "no-headers", false, "table output without the header line")
	if !o.objects { // addObjects registers more
		_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(o.formats(), cobra.ShellCompDirectiveNoFileComp))
	}
}

// addObjects offers, on top of add's formats, every kubectl printer for objects.
func (o *outputFlags) addObjects(cmd *cobra.Command, wide bool) {
	o.objects = true
	o.print = genericclioptions.NewPrintFlags("")
	o.print.OutputFormat = &o.Format
	o.add(cmd, wide)
	cmd.Flags().Lookup("output").Usage = "output format: " + strings.Join(o.formats(), "|") +
		"|name|jsonpath=TEMPLATE|jsonpath-file=FILE|go-template=TEMPLATE|go-template-file=FILE|custom-columns=SPEC|custom-columns-file=FILE"
	o.print.TemplatePrinterFlags.AddFlags(cmd)
	o.print.OutputFlagSpecified = func() bool { return cmd.Flag("output").Changed }
	completions := append(o.formats(), customColumns+"=", customColumnsFile+"=")
	// The template formats take their template after "=": offered with it, as custom-columns.
	for _, f := range o.print.TemplatePrinterFlags.AllowedFormats() {
		completions = append(completions, f+"=")
	}
	for _, f := range o.print.AllowedFormats() {
		if !slices.Contains(completions, f) && !slices.Contains(completions, f+"=") {
			completions = append(completions, f)
		}
	}
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(completions, cobra.ShellCompDirectiveNoFileComp|cobra.ShellCompDirectiveNoSpace))
}

func (o *outputFlags) formats() []string {
	if o.wide {
		return []string{formatTable, formatWide, formatJSON, formatYAML}
	}
	return []string{formatTable, formatJSON, formatYAML}
}

func (o *outputFlags) Validate() error {
	if o.templateOnly() {
		if _, err := o.print.ToPrinter(); err != nil {
			return fmt.Errorf("--template: %w", err)
		}
		return nil
	}
	switch o.Format {
	case formatTable, "", formatJSON, formatYAML:
		return nil
	case formatWide:
		if o.wide {
			return nil
		}
	}
	if o.objects {
		if _, _, ok := o.customColumns(); ok {
			_, err := o.columns()
			return err
		}
		if _, err := o.print.ToPrinter(); err == nil {
			return nil
		} else if !genericclioptions.IsNoCompatiblePrinterError(err) {
			return fmt.Errorf("-o %q: %w", o.Format, err)
		}
		return fmt.Errorf("-o %q: want one of %s, name, jsonpath=, jsonpath-file=, go-template=, go-template-file=, custom-columns=, custom-columns-file=",
			o.Format, strings.Join(o.formats(), ", "))
	}
	return fmt.Errorf("-o %q: want one of %s", o.Format, strings.Join(o.formats(), ", "))
}

func (o *outputFlags) structured() bool { return o.Format == formatJSON || o.Format == formatYAML }

// table reports whether the output is the command's own table (default or wide).
func (o *outputFlags) table() bool {
	if o.templateOnly() {
		return false
	}
	return o.Format == "" || o.Format == formatTable || o.Format == formatWide
}

// templateOnly reports --template without -o, which kubectl takes as -o go-template.
func (o *outputFlags) templateOnly() bool {
	return o.print != nil && *o.print.TemplatePrinterFlags.TemplateArgument != "" && !o.print.OutputFlagSpecified()
}

// printObject writes obj (an Unstructured or an UnstructuredList) in the -o format; table
// writes the command's own table.
func (o *outputFlags) printObject(w io.Writer, obj runtime.Object, table func() error) error {
	switch {
	case o.table():
		return table()
	case o.structured():
		return o.printStructured(w, obj)
	}
	if _, _, ok := o.customColumns(); ok && !o.templateOnly() {
		cols, err := o.columns()
		if err != nil {
			return err
		}
		return o.printColumns(w, cols, obj)
	}
	p, err := o.print.ToPrinter()
	if err != nil {
		return fmt.Errorf("-o %q: %w", o.Format, err)
	}
	return p.PrintObj(obj, w)
}

// printStructured writes v as JSON or YAML, with no raw control character (see escape.go):
// the values are exact, the terminal safe.
func (o *outputFlags) printStructured(w io.Writer, v interface{}) error {
	switch x := v.(type) {
	case *unstructured.Unstructured:
		v = x.Object
	case *unstructured.UnstructuredList:
		items := make([]interface{}, 0, len(x.Items))
		for _, i := range x.Items {
			items = append(items, i.Object)
		}
		v = map[string]interface{}{"apiVersion": x.GetAPIVersion(), "kind": x.GetKind(), "items": items}
	}
	switch o.Format {
	case formatJSON:
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", escapeJSONControls(b))
		return err
	case formatYAML:
		// As yaml.Marshal does (JSON, then YAML), with DEL and the C1 controls escaped in the
		// JSON: the YAML reader refuses them raw, and the encoder then writes them escaped.
		j, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		b, err := yaml.JSONToYAML(escapeJSONControls(j))
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q", o.Format)
}

// printTable writes a kubectl-style table: upper-case headers, tab-aligned columns, each cell
// escaped (escapeCell): a value cannot reach the terminal as a control sequence, nor break the
// table with a tab or a line feed.
func (o *outputFlags) printTable(w io.Writer, headers []string, rows [][]string) error {
	tw := printers.GetNewTabWriter(w)
	if !o.NoHeaders {
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
	}
	cells := make([]string, 0, len(headers))
	for _, r := range rows {
		cells = cells[:0]
		for _, c := range r {
			cells = append(cells, escapeCell(c))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printIdentities writes identities as a table or in a structured format.
func (o *outputFlags) printIdentities(w io.Writer, ids []client.Identity, single bool) error {
	if !o.table() {
		var obj runtime.Object
		var err error
		if single && len(ids) == 1 {
			obj, err = identityObject(&ids[0])
		} else {
			obj, err = identityList(ids)
		}
		if err != nil {
			return err
		}
		return o.printObject(w, obj, nil)
	}
	headers := []string{"ID", "SCHEMA", "STATE", "EMAIL", "AGE"}
	if o.Format == formatWide {
		headers = []string{"ID", "SCHEMA", "STATE", "EMAIL", "USERNAME", "NAME", "CREATED", "UPDATED"}
	}
	rows := make([][]string, 0, len(ids))
	now := time.Now()
	for i := range ids {
		id := &ids[i]
		state := "<none>"
		if id.State != nil {
			state = *id.State
		}
		if o.Format == formatWide {
			rows = append(rows, []string{id.Id, id.SchemaId, state, trait(id, "email"), trait(id, "username"),
				trait(id, "name"), timestamp(id.CreatedAt), timestamp(id.UpdatedAt)})
			continue
		}
		age := "<unknown>"
		if id.CreatedAt != nil {
			age = duration.HumanDuration(now.Sub(*id.CreatedAt))
		}
		rows = append(rows, []string{id.Id, id.SchemaId, state, trait(id, "email"), age})
	}
	return o.printTable(w, headers, rows)
}

// trait renders a trait of the identity; traits are free-form (the schema decides), so a missing
// or non-text value shows as <none>, and a name object as its parts.
func trait(id *client.Identity, key string) string {
	m, ok := id.Traits.(map[string]interface{})
	if !ok {
		return "<none>"
	}
	switch v := m[key].(type) {
	case string:
		if v != "" {
			return v
		}
	case map[string]interface{}:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			if s, ok := v[k].(string); ok && s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, " ")
		}
	}
	return "<none>"
}

func timestamp(t *time.Time) string {
	if t == nil {
		return "<none>"
	}
	return t.UTC().Format(time.RFC3339)
}
