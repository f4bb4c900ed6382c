package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

func TestEscapeTerminal(t *testing.T) {
	for _, tc := range []struct{ in, text, cell string }{
		{"plain text, \"quoted\"", "plain text, \"quoted\"", "plain text, \"quoted\""},
		{"\x1b[31mred\x1b]0;title\x07", "^[[31mred^[]0;title^G", "^[[31mred^[]0;title^G"},
		{"a\rb\x08c\x7fd", `a\rb^Hc^?d`, `a\rb^Hc^?d`},
		{"csi \u009b2J nel \u0085", `csi \u009b2J nel \u0085`, `csi \u009b2J nel \u0085`},
		{"bad \x9b byte", `bad \x9b byte`, `bad \x9b byte`},
		{"two\nlines\tand a tab", "two\nlines\tand a tab", `two\nlines\tand a tab`},
		{"ünïcödé ✓ 名前", "ünïcödé ✓ 名前", "ünïcödé ✓ 名前"},
	} {
		if got := escapeTerminal(tc.in); got != tc.text {
			t.Errorf("escapeTerminal(%q) = %q, want %q", tc.in, got, tc.text)
		}
		if got := escapeCell(tc.in); got != tc.cell {
			t.Errorf("escapeCell(%q) = %q, want %q", tc.in, got, tc.cell)
		}
	}
	// ESC and CR are written as kubectl writes them.
	if got, want := escapeTerminal("\x1b\r"), printers.EscapeTerminal("\x1b\r"); got != want {
		t.Errorf("ESC CR: %q, kubectl writes %q", got, want)
	}
}

// TestTerminalWriter: a C1 control split across two writes (its UTF-8 encoding is two bytes) is
// still caught; an incomplete sequence at the end is written as bytes by Flush.
func TestTerminalWriter(t *testing.T) {
	var out bytes.Buffer
	w := newTerminalWriter(&out)
	for _, chunk := range []string{"a\xc2", "\x9b2J \x1b", "]0;x\x07\n", "é", "\xe2\x9c", "\x93 end \xc2"} {
		if n, err := w.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "a\\u009b2J ^[]0;x^G\né✓ end \\xc2"; out.String() != want {
		t.Fatalf("wrote %q, want %q", out.String(), want)
	}
}

// TestStructuredOutputIsExactAndInert: JSON and YAML carry the value exactly (they decode to
// it) with no raw control character, C1 and DEL included (encoding/json leaves those raw).
func TestStructuredOutputIsExactAndInert(t *testing.T) {
	name := "\x1b[31mred\x1b]0;title\x07 \u009b2J \u0085 \x7f \r\n\t end"
	v := map[string]interface{}{"traits": map[string]interface{}{"name": name}, "list": []string{name}}
	for _, format := range []string{formatJSON, formatYAML} {
		var out bytes.Buffer
		if err := (&outputFlags{Format: format}).printStructured(&out, v); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if bad := rawControls(out.String()); bad != "" {
			t.Errorf("%s output holds raw %s:\n%s", format, bad, out.String())
		}
		var back struct {
			Traits struct {
				Name string `json:"name"`
			} `json:"traits"`
			List []string `json:"list"`
		}
		var err error
		if format == formatJSON {
			err = json.Unmarshal(out.Bytes(), &back)
		} else {
			err = yaml.Unmarshal(out.Bytes(), &back)
		}
		if err != nil || back.Traits.Name != name || len(back.List) != 1 || back.List[0] != name {
			t.Errorf("%s does not decode to the value: %v, %q\n%s", format, err, back.Traits.Name, out.String())
		}
	}
}

// rawControls names the control characters of s a terminal would act on (line feeds and the
// indentation's spaces aside), "" when there is none.
func rawControls(s string) string {
	var bad []string
	for _, r := range s {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) {
			bad = append(bad, string(r))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	q, _ := json.Marshal(strings.Join(bad, ""))
	return string(q)
}
