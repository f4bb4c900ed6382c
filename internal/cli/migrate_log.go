package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
)

// migrateLog turns the output of `kratos migrate sql` into what an operator reads: one line per
// migration applied, Kratos's errors, and a count for the summary; the rest of Kratos's log
// (tracing setup, the migrator's bookkeeping) is dropped, and `migrate --log` shows it whole.
//
// Kratos logs with logrus: as JSON with the rendered config (log.format: json), as
// "key=value" text otherwise (e.g. a config of one's own); both are read. The migrator of
// Kratos v1.3.1 (ory/x popx) logs, per migration it applies, "Migration has not yet been
// applied, running migration." then "> NAME applied successfully", both with the fields
// version and migration_name; a migration applied already is logged at debug level only.
type migrateLog struct {
	mu      sync.Mutex
	out     io.Writer // progress lines
	errOut  io.Writer // Kratos's errors
	partial []byte
	applied int
	errors  int
	// sawInfo: Kratos logs at info level or below, so that an applied migration would show.
	sawInfo bool
	// lastWarning and lastErr keep a repeated message from being shown twice.
	lastWarning, lastErr string
	tail                 []string // the last raw lines, shown when the migration fails without an error line
}

const migrateTailLines = 20

func newMigrateLog(out, errOut io.Writer) *migrateLog { return &migrateLog{out: out, errOut: errOut} }

// Write takes both stdout and stderr of the exec'd process, line by line.
func (m *migrateLog) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data := append(m.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		m.line(string(bytes.TrimRight(data[:i], "\r")))
		data = data[i+1:]
	}
	m.partial = append([]byte(nil), data...)
	return len(p), nil
}

// Flush handles a last line without a line feed.
func (m *migrateLog) Flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.partial) > 0 {
		m.line(string(m.partial))
		m.partial = nil
	}
}

func (m *migrateLog) line(l string) {
	if strings.TrimSpace(l) == "" {
		return
	}
	m.tail = append(m.tail, l)
	if len(m.tail) > migrateTailLines {
		m.tail = m.tail[1:]
	}
	e, ok := parseLogLine(l)
	if !ok {
		// Kratos's own stdout and cobra's: its success line is the summary's to say, and the
		// usage text that follows an error is noise; the error is shown.
		if s, ok := strings.CutPrefix(l, "Error: "); ok {
			m.errors++
			if s != m.lastErr {
				fmt.Fprintf(m.errOut, "kratos: %s\n", s)
			}
		}
		return
	}
	if e.level == "info" || e.level == "debug" || e.level == "trace" {
		m.sawInfo = true
	}
	switch {
	case e.level == "warning" || e.level == "warn":
		// "Unable to ping database, retrying." comes every second or so: said once.
		msg := withError(e)
		if msg != m.lastWarning {
			m.lastWarning = msg
			fmt.Fprintf(m.errOut, "kratos: warning: %s\n", msg)
		}
	case e.level == "error" || e.level == "fatal" || e.level == "panic":
		m.errors++
		m.lastErr = e.err
		fmt.Fprintf(m.errOut, "kratos: %s\n", withError(e))
	case strings.HasPrefix(e.msg, "> ") && strings.HasSuffix(e.msg, " applied successfully"):
		m.applied++
		name := e.fields["migration_name"]
		if name == "" {
			name = strings.TrimSuffix(strings.TrimPrefix(e.msg, "> "), " applied successfully")
		}
		fmt.Fprintf(m.out, "applied %s %s\n", e.fields["version"], name)
	}
}

// Applied is the number of migrations Kratos applied.
func (m *migrateLog) Applied() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied
}

// Counted reports whether Applied counts the migrations: Kratos logged at info level (its log
// level may hide them).
func (m *migrateLog) Counted() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sawInfo || m.applied > 0
}

// Explain writes the end of the raw output when the migration failed and no error line said
// why.
func (m *migrateLog) Explain() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.errors > 0 || len(m.tail) == 0 {
		return
	}
	fmt.Fprintf(m.errOut, "--- last lines of kratos migrate ---\n%s\n", strings.Join(m.tail, "\n"))
}

func withError(e logEntry) string {
	if e.err != "" && !strings.Contains(e.msg, e.err) {
		return strings.TrimSuffix(e.msg, ".") + ": " + e.err
	}
	return e.msg
}

type logEntry struct {
	level, msg, err string
	fields          map[string]string
}

// logfmtKey finds the keys of a logrus text line. Its values are not quoted when they hold
// blanks ("msg=Migration has not yet been applied, running migration. audience=..."), so a
// value runs up to the next " key=".
var logfmtKey = regexp.MustCompile(`(?:^| )([a-z_]+)=`)

func parseLogLine(l string) (logEntry, bool) {
	e := logEntry{fields: map[string]string{}}
	if strings.HasPrefix(l, "{") {
		var m map[string]interface{}
		if json.Unmarshal([]byte(l), &m) != nil {
			return e, false
		}
		for k, v := range m {
			switch x := v.(type) {
			case string:
				e.fields[k] = x
			case map[string]interface{}: // logrusx writes an error as {"message": ...}
				if s, ok := x["message"].(string); ok {
					e.fields[k] = s
				}
			case nil:
			default:
				b, _ := json.Marshal(x)
				e.fields[k] = string(b)
			}
		}
	} else {
		locs := logfmtKey.FindAllStringSubmatchIndex(l, -1)
		if len(locs) == 0 || !strings.HasPrefix(l[locs[0][0]:], "time=") && !strings.HasPrefix(strings.TrimSpace(l[locs[0][0]:]), "level=") {
			return e, false
		}
		for i, loc := range locs {
			end := len(l)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			e.fields[l[loc[2]:loc[3]]] = strings.Trim(l[loc[1]:end], `"`)
		}
	}
	e.level, e.msg = e.fields["level"], e.fields["msg"]
	if e.level == "" {
		return e, false
	}
	if s, ok := e.fields["error"]; ok {
		// logrusx's text format writes the error as a Go map: map[message:TEXT].
		if inner, ok := strings.CutPrefix(s, "map[message:"); ok {
			s = strings.TrimSuffix(inner, "]")
		}
		e.err = s
	}
	return e, true
}
