package actions

import (
	"fmt"
	"testing"
)

// TestMigrationStatus: popx's rules: a version is applied when recorded, or (longer than 14
// digits) when its first 14 digits are (a legacy run); recorded versions the list lacks are
// reported, legacy prefixes are not.
func TestMigrationStatus(t *testing.T) {
	known := []Migration{{"20150100000001000000", "networks"}, {"20191100000001000000", "identities"}, {"20191100000001000001", "identities"}, {"20240425095000000000", "fix"}}
	for _, tc := range []struct {
		applied          []string
		pending, unknown string
		n                int
	}{
		{nil, "[20150100000001000000 20191100000001000000 20191100000001000001 20240425095000000000]", "[]", 0},
		{[]string{"20150100000001000000", "20191100000001000000", "20191100000001000001", "20240425095000000000"}, "[]", "[]", 4},
		{[]string{"20191100000001", "20150100000001000000"}, "[20240425095000000000]", "[]", 3},
		{[]string{"20150100000001000000", "20991231000000000000"}, "[20191100000001000000 20191100000001000001 20240425095000000000]", "[20991231000000000000]", 1},
	} {
		st := MigrationStatus(known, tc.applied)
		var pending []string
		for _, m := range st.Pending {
			pending = append(pending, m.Version)
		}
		if got := fmt.Sprint(pending); got != tc.pending {
			t.Errorf("applied %v: pending %s, want %s", tc.applied, got, tc.pending)
		}
		if got := fmt.Sprint(st.Unknown); got != tc.unknown {
			t.Errorf("applied %v: unknown %s, want %s", tc.applied, got, tc.unknown)
		}
		if st.Applied != tc.n || st.Known != 4 {
			t.Errorf("applied %v: %d of %d, want %d of 4", tc.applied, st.Applied, st.Known, tc.n)
		}
	}
	if ms, ok := KnownMigrations("v1.3.1", "postgres"); !ok || len(ms) != 315 || ms[0].Name != "networks" {
		t.Errorf("Kratos v1.3.1's Postgres migrations: %d, %v", len(ms), ok)
	}
	if _, ok := KnownMigrations("v9.9.9", "postgres"); ok {
		t.Error("a list for an unknown Kratos")
	}
}
