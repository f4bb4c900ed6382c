package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"k8s.io/cli-runtime/pkg/printers"
)

// The plugin prints text it does not control: identity traits (a self-registered user picks
// their own name), Kratos's answers and error messages, pods' termination messages, the output
// of `kratos migrate`. A terminal acts on control characters in it (set the window title,
// rewrite earlier lines, worse), so everything the plugin writes is escaped as kubectl escapes
// table cells, and more thoroughly:
//
//   - tables escape each cell (escapeCell), so that a line feed or tab in a value cannot break
//     the table either;
//   - Main wraps the output streams in a terminalWriter, so that plain messages, errors and
//     streamed output are escaped whatever path they took;
//   - JSON and YAML stay exact and parseable: encoding/json escapes the C0 controls, DEL and the
//     C1 controls are escaped by escapeJSONControls, and YAML is converted from that JSON (its
//     encoder writes the remaining controls as escapes in double-quoted strings).

// escapeTerminal returns s with every character a terminal could act on made visible: ESC and
// CR as kubectl writes them (cli-runtime's printers.EscapeTerminal: "^[" and `\r`), the other C0
// controls and DEL in caret notation ("^G" for BEL, "^?" for DEL), the C1 controls (U+0080 to
// U+009F; U+009B is a one-character CSI to many terminals) as `\u009b`, and a byte that is not
// UTF-8 as `\x9b`. Line feeds and tabs are kept.
func escapeTerminal(s string) string { return escape(s, false) }

// escapeCell is escapeTerminal for a table cell: line feeds and tabs, which would break the
// table, are written `\n` and `\t`.
func escapeCell(s string) string { return escape(s, true) }

func escape(s string, cell bool) string {
	if safe(s, cell) {
		return s
	}
	s = printers.EscapeTerminal(s)
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && cell:
			b.WriteString(`\n`)
		case r == '\t' && cell:
			b.WriteString(`\t`)
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20:
			b.WriteByte('^')
			b.WriteByte(byte(r) + '@')
		case r == 0x7f:
			b.WriteString("^?")
		case r >= 0x80 && r <= 0x9f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// safe reports whether s is printable ASCII (with line feeds and tabs outside cells): the
// common case, returned as is.
func safe(s string, cell bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && (cell || (c != '\n' && c != '\t'))) || c >= 0x7f {
			return false
		}
	}
	return true
}

// terminalWriter escapes what goes through it (escapeTerminal). A UTF-8 sequence cut by the
// end of a Write is held until the next one (or Flush), so that a C1 control split across
// writes is still recognised.
type terminalWriter struct {
	w       io.Writer
	pending []byte
}

func newTerminalWriter(w io.Writer) *terminalWriter { return &terminalWriter{w: w} }

func (t *terminalWriter) Write(p []byte) (int, error) {
	data := p
	if len(t.pending) > 0 {
		data = append(t.pending, p...)
		t.pending = nil
	}
	cut := len(data) - cutRune(data)
	if cut < len(data) {
		t.pending = append([]byte(nil), data[cut:]...)
	}
	if _, err := io.WriteString(t.w, escapeTerminal(string(data[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what is held (an incomplete UTF-8 sequence, escaped as bytes).
func (t *terminalWriter) Flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	s := escapeTerminal(string(t.pending))
	t.pending = nil
	_, err := io.WriteString(t.w, s)
	return err
}

// cutRune is the length of the UTF-8 sequence that b ends with when it is cut short, else 0.
func cutRune(b []byte) int {
	for n := 1; n < utf8.UTFMax && n <= len(b); n++ {
		c := b[len(b)-n]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-n:]) {
				return 0
			}
			return n
		}
	}
	return 0
}

// escapeJSONControls writes DEL and the C1 controls, which encoding/json leaves raw, as \u
// escapes. In JSON they can only occur inside strings, where the escape stands for the same
// character: the document decodes to the same value.
func escapeJSONControls(b []byte) []byte {
	if !bytes.ContainsFunc(b, func(r rune) bool { return r == 0x7f || (r >= 0x80 && r <= 0x9f) }) {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			fmt.Fprintf(&out, `\u%04x`, r)
		} else {
			out.Write(b[:size])
		}
		b = b[size:]
	}
	return out.Bytes()
}
