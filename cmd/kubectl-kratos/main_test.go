package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// The test binary is the plugin when this variable is set (see TestMain).
const runPlugin = "KUBECTL_KRATOS_TEST_RUN_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(runPlugin) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSignalInterrupts: Ctrl-C (SIGINT) or SIGTERM while the plugin waits for the admin API
// interrupts the command: exit 1, the one line "error: interrupted", nothing on stdout.
func TestSignalInterrupts(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case arrived <- struct{}{}:
				default:
				}
				select { // the answer never comes
				case <-r.Context().Done():
				case <-release:
				}
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })

			cmd := exec.Command(os.Args[0], "--admin-url", srv.URL, "identity", "list")
			cmd.Env = append(os.Environ(), runPlugin+"=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case <-arrived:
			case err := <-exited:
				t.Fatalf("the plugin exited (%v) before its request reached the admin API: %s", err, stderr.String())
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("no request reached the admin API within 30s")
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("the plugin still runs 10s after %s", sig)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || stderr.String() != "error: interrupted\n" || stdout.Len() != 0 {
				t.Fatalf("after %s: %v, stdout %q, stderr %q; want exit 1 and only \"error: interrupted\"", sig, err, stdout.String(), stderr.String())
			}
		})
	}
}
