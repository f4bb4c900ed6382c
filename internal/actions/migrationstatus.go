package actions

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Kratos v1.3.1 has no `migrate status`, and `kratos migrate sql` without --yes computes the
// plan but prints it empty (cmd/cliclient/migrate.go never writes its plan buffer) before
// asking to apply it. What is pending is therefore read the way Kratos itself decides it
// (ory/x popx Migrator.Status): the versions recorded in the database's schema_migration table
// against the migrations the Kratos binary carries, which are embedded in it and listed here,
// per Kratos version and dialect, as that binary applies them to an empty database (a test
// migrates a real PostgreSQL with the real binary and compares; `-update` rewrites the list).

//go:embed migrations/*.txt
var migrationLists embed.FS

// MigrationTable is the table in which Kratos (gobuffalo/pop, ory/x popx) records the
// versions it applied.
const MigrationTable = "schema_migration"

// Migration is one migration of Kratos.
type Migration struct {
	Version string `json:"version"`
	Name    string `json:"name"`
}

// MigrationListPath is the file that lists the migrations of a Kratos version for a dialect.
func MigrationListPath(kratosVersion, dialect string) string {
	return fmt.Sprintf("migrations/kratos-%s-%s.txt", kratosVersion, dialect)
}

// KnownMigrations returns the migrations Kratos kratosVersion applies to a database of dialect
// (e.g. "postgres"), in order; ok is false when the plugin does not know them.
func KnownMigrations(kratosVersion, dialect string) (ms []Migration, ok bool) {
	b, err := migrationLists.ReadFile(MigrationListPath(kratosVersion, dialect))
	if err != nil {
		return nil, false
	}
	return ParseMigrationList(b), true
}

// ParseMigrationList reads a list: one "VERSION NAME" per line.
func ParseMigrationList(b []byte) []Migration {
	var ms []Migration
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, n, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if v != "" && !strings.HasPrefix(v, "#") {
			ms = append(ms, Migration{Version: v, Name: n})
		}
	}
	return ms
}

// MigrationState is what MigrationStatus finds.
type MigrationState struct {
	Known   int         `json:"known"`
	Applied int         `json:"applied"`
	Pending []Migration `json:"pending"`
	// Unknown are versions recorded in the database that the list does not have: the
	// database was migrated by a newer Kratos.
	Unknown []string `json:"unknown,omitempty"`
}

// AppliedMigrations reads the versions recorded in the schema_migration table of the
// database conn is connected to; none when the table does not exist (a fresh database).
func AppliedMigrations(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM "+MigrationTable)
	if err == nil {
		var versions []string
		versions, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err == nil {
			return versions, nil
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return nil, nil
	}
	return nil, fmt.Errorf("read %s: %w", MigrationTable, err)
}

// MigrationStatus compares known with applied as popx does: a migration is applied when its
// version is recorded, or, for a version longer than 14 digits, its first 14 digits (a legacy
// migration run recorded them).
func MigrationStatus(known []Migration, applied []string) MigrationState {
	st := MigrationState{Known: len(known), Pending: []Migration{}}
	have := map[string]bool{}
	for _, v := range applied {
		have[v] = true
	}
	seen := map[string]bool{}
	for _, m := range known {
		seen[m.Version] = true
		if have[m.Version] || (len(m.Version) > 14 && have[m.Version[:14]]) {
			st.Applied++
			continue
		}
		st.Pending = append(st.Pending, m)
	}
	for _, v := range applied {
		legacy := false
		if len(v) == 14 {
			for k := range seen {
				if strings.HasPrefix(k, v) {
					legacy = true
					break
				}
			}
		}
		if !seen[v] && !legacy {
			st.Unknown = append(st.Unknown, v)
		}
	}
	sort.Strings(st.Unknown)
	return st
}
