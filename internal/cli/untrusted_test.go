package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/cli"
)

// What the plugin reads from Kratos is not the operator's: a self-registered user picks their
// name, and an admin URL may lead anywhere. These tests feed it hostile text, answers that never
// come and answers that never end.

// payload is a name a user may register with: an SGR colour, an OSC that sets the terminal's
// title (ended by BEL), an 8-bit CSI (U+009B, "erase display" here), a DEL.
const payload = "\x1b[31mred\x1b]0;title\x07 \u009b2J\x7f"

// escapedPayload is how tables show it.
const escapedPayload = `^[[31mred^[]0;title^G \u009b2J^?`

// TestKratosTextIsEscaped: a self-registered user's name reaches the operator's terminal
// escaped in tables (identity get and list, default and wide), and exact in JSON and YAML, which
// hold no raw control character either.
func TestKratosTextIsEscaped(t *testing.T) {
	srv := kratos(t)
	email := mail("escape")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := srv.Register(ctx, map[string]interface{}{"email": email, "name": payload}, password)
	if err != nil {
		t.Fatal(err)
	}
	g := []string{"--admin-url", srv.AdminURL}
	for _, args := range [][]string{
		{"identity", "get", id}, {"identity", "get", id, "-o", "wide"}, {"identity", "get", "--email", email, "-o", "wide"},
		{"identity", "list"}, {"identity", "list", "-o", "wide"},
		{"identity", "get", id, "-o", "json"}, {"identity", "get", id, "-o", "yaml"},
		{"identity", "list", "-o", "json"}, {"identity", "list", "-o", "yaml"},
		{"identity", "get", id, "-o", "jsonpath={.traits.name}"}, {"identity", "get", id, "-o", "go-template={{.traits.name}}"},
		{"identity", "list", "-o", "custom-columns=ID:.id,NAME:.traits.name"},
		{"identity", "list", "-o", "jsonpath={range .items[*]}{.traits.name}{\"\\n\"}{end}"},
	} {
		r := kk(t, "", append(g, args...)...).ok(t, args...)
		if bad := cli.RawControls(r.stdout + r.stderr); bad != "" {
			t.Errorf("%s: output holds raw control characters %s:\n%s", strings.Join(args, " "), bad, r.stdout)
		}
		out := r.stdout
		switch last := args[len(args)-1]; {
		case strings.HasPrefix(last, "jsonpath=") || strings.HasPrefix(last, "go-template="):
			// The template's raw text is escaped on its way to the terminal.
			if !strings.Contains(out, escapedPayload) {
				t.Errorf("%s: the name is not shown escaped as %q:\n%s", strings.Join(args, " "), escapedPayload, out)
			}
		case strings.HasPrefix(last, "custom-columns="):
			if !strings.Contains(out, id) || !strings.Contains(out, escapedPayload) || !strings.HasPrefix(out, "ID ") {
				t.Errorf("%s: want a table with the ID and the escaped name:\n%s", strings.Join(args, " "), out)
			}
		case last == "wide":
			if !strings.Contains(out, escapedPayload) {
				t.Errorf("%s: the name is not shown escaped as %q:\n%s", strings.Join(args, " "), escapedPayload, out)
			}
		case last == "json" || last == "yaml":
			// The value is exact: decoding gives the name back.
			var one struct {
				Traits map[string]string `json:"traits"`
			}
			var many struct {
				Items []struct {
					ID     string            `json:"id"`
					Traits map[string]string `json:"traits"`
				} `json:"items"`
			}
			unmarshal := json.Unmarshal
			if args[len(args)-1] == "yaml" {
				unmarshal = func(b []byte, v interface{}) error { return yaml.Unmarshal(b, v) }
			}
			if args[1] == "get" {
				if err := unmarshal([]byte(out), &one); err != nil || one.Traits["name"] != payload {
					t.Errorf("%s: name %q (%v), want %q", strings.Join(args, " "), one.Traits["name"], err, payload)
				}
				continue
			}
			if err := unmarshal([]byte(out), &many); err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			found := false
			for _, i := range many.Items {
				found = found || (i.ID == id && i.Traits["name"] == payload)
			}
			if !found {
				t.Errorf("%s: identity %s with the exact name not found", strings.Join(args, " "), id)
			}
		}
	}
}

// standIn serves the admin API's routes with handler, on 127.0.0.1; its handlers are released
// when the test ends.
func standIn(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, release <-chan struct{})) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler(w, r, release) }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handlers return, srv.Close does not wait on them
	return srv.URL
}

// oneLine checks that the command failed with exit 1 and one error line containing want.
func (r result) oneLine(t *testing.T, want ...string) {
	t.Helper()
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "error: ") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and one error line", r.code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not say %q", r.stderr, w)
		}
	}
}

// TestKratosErrorIsEscaped: Kratos's error message (here a stand-in's) is shown escaped.
func TestKratosErrorIsEscaped(t *testing.T) {
	url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]interface{}{"error": map[string]interface{}{
			"code": 400, "status": "Bad Request", "message": "bad input " + payload}})
	})
	r := kk(t, "", "--admin-url", url, "identity", "get", "--email", "nobody@example.test")
	r.oneLine(t, "the Kratos admin API answered 400 Bad Request: bad input "+escapedPayload)
	if bad := cli.RawControls(r.stderr); bad != "" {
		t.Errorf("stderr holds raw control characters %s: %q", bad, r.stderr)
	}
}

// TestAdminTimeout: a Kratos that never answers (a stand-in that accepts the request and
// blocks) fails the command after --admin-timeout, with one line that says so.
func TestAdminTimeout(t *testing.T) {
	var requests atomic.Int64
	url := standIn(t, func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		requests.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	for _, args := range [][]string{
		{"identity", "get", "--email", "nobody@example.test"},
		{"identity", "list"},
		{"identity", "create-admin", "--username", "ada", "--email", "ada@example.test"},
	} {
		r := kk(t, "", append([]string{"--admin-url", url, "--admin-timeout", "500ms"}, args...)...)
		r.oneLine(t, "the Kratos admin API did not answer within 500ms", "(admin API at "+url+")", "--admin-timeout sets the limit")
		if r.took > 10*time.Second {
			t.Errorf("%s: took %s with --admin-timeout 500ms", strings.Join(args, " "), r.took)
		}
		t.Logf("%s: exit %d after %s: %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	}
	if requests.Load() != 3 {
		t.Errorf("%d requests reached the stand-in, want 3", requests.Load())
	}
}

// TestAdminTimeoutFlag: the limit is on by default (30 s) and must be positive.
func TestAdminTimeoutFlag(t *testing.T) {
	root := cli.NewRootCmd(genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
	if f := root.PersistentFlags().Lookup("admin-timeout"); f == nil || f.DefValue != cli.DefaultAdminTimeout.String() || cli.DefaultAdminTimeout != 30*time.Second {
		t.Fatalf("--admin-timeout: %+v, want a 30s default", f)
	}
	r := kk(t, "", "--admin-url", "http://127.0.0.1:1", "--admin-timeout", "0s", "identity", "list")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "--admin-timeout 0s: must be positive") {
		t.Fatalf("--admin-timeout 0s: exit %d, %q", r.code, r.stderr)
	}
}

// TestAdminResponseTooLarge: an admin API whose answer does not end (chunked, no length) or
// announces 300 MiB is refused after at most MaxResponseBytes, with one line that says so; the
// stand-in sees the plugin stop reading (what it could send is bounded by the limit and the
// sockets' buffers).
func TestAdminResponseTooLarge(t *testing.T) {
	const huge = 300 << 20
	for _, tc := range []struct {
		name   string
		length bool
		status int
	}{
		{"endless list", false, http.StatusOK},
		{"300 MiB announced", true, http.StatusOK},
		{"endless error", false, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				if tc.length {
					w.Header().Set("Content-Length", fmt.Sprint(huge))
				}
				w.WriteHeader(tc.status)
				if _, err := io.WriteString(w, "["); err != nil {
					return
				}
				elems := []byte(strings.Repeat(`{"id":"00000000-0000-0000-0000-000000000000","schema_id":"default"},`, 1000))
				for sent.Load() < huge {
					n, err := w.Write(elems)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			})
			r := kk(t, "", "--admin-url", url, "identity", "list")
			r.oneLine(t, "the Kratos admin API's response is larger than 16 MiB (the plugin's limit): refused", "list identities (page 1)")
			t.Logf("exit %d: %s (the stand-in sent %d MiB)", r.code, strings.TrimSpace(r.stderr), sent.Load()>>20)
			if sent.Load() >= 64<<20 {
				t.Errorf("the stand-in sent %d MiB: the plugin kept reading", sent.Load()>>20)
			}
		})
	}
}
