package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestMigrateLog reads the real output of Kratos v1.3.1's `migrate sql` (JSON as the rendered
// config logs, text as Kratos's default, and a failure), fed in odd-sized writes.
func TestMigrateLog(t *testing.T) {
	for _, tc := range []struct {
		file, wantOut, wantErr string
		applied                int
	}{
		{"testdata/migrate-json.log", "applied 20150100000001000000 networks\napplied 20191100000001000000 identities\napplied 20191100000001000001 identities\n", "", 3},
		{"testdata/migrate-text.log", "applied 20150100000001000000 networks\napplied 20191100000001000000 identities\napplied 20191100000001000001 identities\n", "", 3},
		{"testdata/migrate-error.log", "", "kratos: Unable to instantiate service registry: dsn value requested an unknown driver\n", 0},
		{"testdata/migrate-error-text.log", "", "kratos: Unable to instantiate service registry: dsn value requested an unknown driver\n", 0},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		m := newMigrateLog(&out, &errOut)
		for len(b) > 0 {
			n := min(len(b), 37)
			if _, err := m.Write(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
		m.Flush()
		if out.String() != tc.wantOut || errOut.String() != tc.wantErr || m.Applied() != tc.applied {
			t.Errorf("%s: out %q, err %q, applied %d; want %q, %q, %d", tc.file, out.String(), errOut.String(), m.Applied(), tc.wantOut, tc.wantErr, tc.applied)
		}
	}

	// A warning repeated every second is said once; a failure without an error line shows
	// the end of the raw output.
	var out, errOut bytes.Buffer
	m := newMigrateLog(&out, &errOut)
	ping := `{"error":{"message":"dial tcp 127.0.0.1:1: connect: connection refused"},"level":"warning","msg":"Unable to ping database, retrying."}` + "\n"
	_, _ = m.Write([]byte(ping + ping + ping + "something odd\n"))
	m.Explain()
	if got := errOut.String(); strings.Count(got, "Unable to ping database") != 4 || !strings.HasPrefix(got, "kratos: warning: Unable to ping database, retrying: dial tcp") ||
		!strings.Contains(got, "--- last lines of kratos migrate ---\n") || !strings.HasSuffix(got, "something odd\n") {
		t.Errorf("stderr:\n%s", got)
	}
}
