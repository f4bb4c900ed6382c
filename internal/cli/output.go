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
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Output formats.
const (
	formatTable = "table"
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputFlags are -o and --no-headers.
type outputFlags struct {
	Format    string
	NoHeaders bool
	wide      bool // whether "wide" is offered
}

func (o *outputFlags) add(cmd *cobra.Command, wide bool) {
	o.wide = wide
	formats := []string{formatTable, formatJSON, formatYAML}
	if wide {
		formats = []string{formatTable, formatWide, formatJSON, formatYAML}
	}
	cmd.Flags().StringVarP(&o.Format, "output", "o", formatTable, "output format: "+strings.Join(formats, "|"))
	cmd.Flags().BoolVar(&o.NoHeaders, "no-headers", false, "table output without the header line")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

func (o *outputFlags) Validate() error {
	switch o.Format {
	case formatTable, formatJSON, formatYAML:
		return nil
	case formatWide:
		if o.wide {
			return nil
		}
	}
	formats := "table, json, yaml"
	if o.wide {
		formats = "table, wide, json, yaml"
	}
	return fmt.Errorf("-o %q: want one of %s", o.Format, formats)
}

func (o *outputFlags) structured() bool { return o.Format == formatJSON || o.Format == formatYAML }

// printStructured writes v as JSON or YAML, with no raw control character (see escape.go):
// the values are exact, the terminal safe.
func (o *outputFlags) printStructured(w io.Writer, v interface{}) error {
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
	if o.structured() {
		if single && len(ids) == 1 {
			return o.printStructured(w, ids[0])
		}
		return o.printStructured(w, ids)
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
