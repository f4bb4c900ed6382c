package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// Every failure of render leaves one line in the termination log, the only termination message
// the injected container has (its policy is File): a bad flag or a missing --spec as well as a
// broken Secret. Success writes nothing there.
func TestRenderTerminationMessage(t *testing.T) {
	spec := &config.Spec{
		Database: config.DatabasePostgres, DatabaseSecret: "pg", DefaultSchema: "default",
		PublicURL: "https://auth.example.com/", Features: []string{config.FeatureLocalIDP},
		SenderName: "Kratos", SenderAddress: "no-reply@example.com", Migrate: config.MigrateManual,
		Courier: config.CourierWatch, Sidecar: config.SidecarNative, Image: "oryd/kratos:v1.3.1",
		LogLevel: "info", Admin: config.AdminLocalhost,
	}
	specJSON, err := spec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	inputs := t.TempDir()
	pg := config.SecretDir(inputs, "pg")
	if err := os.MkdirAll(pg, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"dsn": "postgres://kratos:N0t%SENTINEL!@db:5432/kratos"} {
		if err := os.WriteFile(filepath.Join(pg, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sqlite := *spec
	sqlite.Database, sqlite.DatabaseSecret, sqlite.Migrate = config.DatabaseSQLite, "", config.MigrateAuto
	sqliteJSON, err := sqlite.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string // "" when render succeeds
	}{
		{"unknown flag", []string{"render", "--spec=" + specJSON, "--colour=blue"}, "unknown flag: --colour"},
		{"no spec", []string{"render", "--inputs=" + inputs}, `required flag(s) "spec" not set`},
		{"bad spec", []string{"render", "--spec={"}, "parse spec"},
		{"bad DSN", []string{"render", "--spec=" + specJSON, "--inputs=" + inputs, "--out=" + out, "--data-dir=" + out},
			`secret "pg" key "dsn": not a connection URL that Kratos can parse`},
		{"success", []string{"render", "--spec=" + sqliteJSON, "--inputs=" + inputs, "--out=" + out, "--data-dir=" + out}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			termLog := filepath.Join(t.TempDir(), "termination-log")
			if err := os.WriteFile(termLog, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			root := newRootCmd()
			var stdout, stderr bytes.Buffer
			root.SetOut(&stdout)
			root.SetErr(&stderr)
			root.SetArgs(tc.args)
			err := execute(root, termLog)
			msg, rerr := os.ReadFile(termLog)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tc.want == "" {
				if err != nil || len(msg) != 0 {
					t.Errorf("render: %v; termination message %q", err, msg)
				}
				return
			}
			if err == nil {
				t.Fatalf("render succeeded: %s", stdout.String())
			}
			if !strings.Contains(string(msg), tc.want) || strings.Count(string(msg), "\n") != 1 {
				t.Errorf("termination message %q, want one line with %q (error %v)", msg, tc.want, err)
			}
			if strings.Contains(string(msg)+stderr.String()+err.Error(), "SENTINEL") {
				t.Errorf("a secret value is in the output: %q", msg)
			}
		})
	}
}

// The render container copies the courier gate into the bin volume: whole, executable, and
// replacing a previous copy (a restarted pod).
func TestInstallCourierGate(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "bin", "courier-gate")
	if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"first", "second copy"} {
		if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := installCourierGate(src + ":" + dst); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil || string(b) != content {
			t.Fatalf("installed %q, %v; want %q", b, err, content)
		}
		if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o555 {
			t.Errorf("mode %v, want r-xr-xr-x", fi.Mode())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "bin", ".courier-gate-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	for _, bad := range []string{"no-colon", ":dst", filepath.Join(dir, "missing") + ":" + dst} {
		if err := installCourierGate(bad); err == nil {
			t.Errorf("installCourierGate(%q) succeeded", bad)
		}
	}
	if err := installCourierGate(""); err != nil {
		t.Errorf("no gate to install: %v", err)
	}
}
