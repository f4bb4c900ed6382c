package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Plugin faults: an admin API that fails (5xx), is slow, or answers garbage. Every identity verb
// must then exit 1 with one line on stderr that names the operation and what was wrong, and
// print nothing else: no stack trace, no panic, no dump of the answer, nothing on stdout.

const (
	faultID    = "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"
	faultID2   = "0b0b5a8d-7f3f-4b5c-9b1e-2f6c3c0e6a52"
	faultEmail = "ada@example.test" // a login identifier of faultID
	freeEmail  = "new@example.test" // nobody's
)

func faultIdentity(id string) map[string]interface{} {
	return map[string]interface{}{
		"id": id, "schema_id": "admin", "schema_url": "http://kratos.test/schemas/YWRtaW4", "state": "active",
		"traits":          map[string]interface{}{"email": faultEmail, "username": "ada"},
		"metadata_public": nil, "metadata_admin": nil,
		"credentials": map[string]interface{}{
			"password": map[string]interface{}{"type": "password", "identifiers": []string{faultEmail}, "version": 0},
			"totp":     map[string]interface{}{"type": "totp", "identifiers": []string{faultID}, "version": 0},
			"oidc": map[string]interface{}{"type": "oidc", "identifiers": []string{"github:1234"}, "version": 0,
				"config": map[string]interface{}{"providers": []interface{}{map[string]interface{}{"provider": "github", "subject": "1234"}}}},
		},
	}
}

// healthyKratos answers the admin API routes the identity verbs use as Kratos v1.3 does (status,
// Content-Type and shape); the identities are faultID (login identifier faultEmail) and, on a
// second page of the unfiltered list, faultID2.
func healthyKratos(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v interface{}) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	q := r.URL.Query()
	switch path := strings.TrimPrefix(r.URL.Path, "/admin/identities"); {
	case r.Method == http.MethodGet && path == "":
		switch {
		case q.Get("credentials_identifier") == faultEmail:
			reply(http.StatusOK, []interface{}{faultIdentity(faultID)})
		case q.Has("credentials_identifier"):
			reply(http.StatusOK, []interface{}{})
		case q.Get("page_token") == "":
			w.Header().Set("Link", `</admin/identities?page_size=1&page_token=p2>; rel="next"`)
			reply(http.StatusOK, []interface{}{faultIdentity(faultID)})
		default:
			reply(http.StatusOK, []interface{}{faultIdentity(faultID2)})
		}
	case r.Method == http.MethodGet && path == "/"+faultID:
		reply(http.StatusOK, faultIdentity(faultID))
	case r.Method == http.MethodPost && path == "":
		reply(http.StatusCreated, faultIdentity(faultID))
	case r.Method == http.MethodPut && path == "/"+faultID:
		reply(http.StatusOK, faultIdentity(faultID))
	case r.Method == http.MethodPost && r.URL.Path == "/admin/recovery/code":
		reply(http.StatusCreated, map[string]interface{}{"recovery_code": "123456",
			"recovery_link": "http://kratos.test/self-service/recovery?flow=f", "expires_at": "2030-01-01T00:00:00Z"})
	case r.Method == http.MethodDelete && (path == "/"+faultID || path == "/"+faultID+"/sessions" ||
		strings.HasPrefix(path, "/"+faultID+"/credentials/")):
		w.WriteHeader(http.StatusNoContent)
	default:
		reply(http.StatusNotFound, map[string]interface{}{"error": map[string]interface{}{"code": 404, "status": "Not Found",
			"message": "no route " + r.Method + " " + r.URL.Path}})
	}
}

// fault is one way the admin API misbehaves. want is what the error line must say; wantDelete,
// when set, what it must say when the fault hit a DELETE (whose success is 204 with no body).
// A slow fault is run with --admin-timeout faultTimeout, the others with the default (30s).
type fault struct {
	name       string
	answer     func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
	want       string
	wantDelete string
	slow       bool
}

// faultTimeout is --admin-timeout for the slow faults.
const faultTimeout = 500 * time.Millisecond

// A Kratos error whose message runs over several lines, the later ones a stack trace: only the
// first line may reach the operator.
const multiLineMessage = "database unreachable: dial tcp 10.0.0.7:5432: connect: connection refused\n" +
	"goroutine 1 [running]:\nmain.main()\n\t/src/kratos/main.go:12 +0x1d\npanic: boom"

const htmlPage = `<!DOCTYPE html>
<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
`

const appPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Shop</title><script src="/static/app.js"></script></head>
<body><div id="root"></div></body>
</html>
`

func send(status int, contentType, body string) func(http.ResponseWriter, *http.Request, <-chan struct{}) {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.Header()["Content-Type"] = nil // none unless given: no sniffing
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// healthyBody is what healthyKratos answers r (an identity for the routes that answer nothing).
func healthyBody(r *http.Request) string {
	rec := &recorder{header: http.Header{}}
	healthyKratos(rec, r)
	if rec.body.Len() == 0 {
		b, _ := json.Marshal(faultIdentity(faultID))
		return string(b)
	}
	return rec.body.String()
}

type recorder struct {
	header http.Header
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(int)             {}

var faults = []fault{
	{name: "500 with a Kratos error", answer: send(http.StatusInternalServerError, "application/json",
		`{"error":{"code":500,"status":"Internal Server Error","message":`+jsonString(multiLineMessage)+`}}`),
		want: "the Kratos admin API answered 500 Internal Server Error: database unreachable: dial tcp 10.0.0.7:5432: connect: connection refused…"},
	{name: "500 with no body", answer: send(http.StatusInternalServerError, "", ""),
		want: "the Kratos admin API answered 500 Internal Server Error"},
	{name: "502 HTML error page", answer: send(http.StatusBadGateway, "text/html", htmlPage),
		want: "the Kratos admin API answered 502 Bad Gateway with text/html, not a Kratos error (admin API at "},
	{name: "503 text", answer: send(http.StatusServiceUnavailable, "text/plain", "upstream connect error or disconnect/reset before headers\nreset reason: overflow\n"),
		want: "the Kratos admin API answered 503 Service Unavailable with text/plain, not a Kratos error: upstream connect error or disconnect/reset before headers…"},
	{name: "slower than --admin-timeout", answer: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		select {
		case <-time.After(10 * faultTimeout):
			healthyKratos(w, r)
		case <-r.Context().Done():
		case <-release:
		}
	}, want: "the Kratos admin API did not answer within 500ms", slow: true},
	{name: "body stalls", answer: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `[{"id":`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}, want: "the Kratos admin API did not answer within 500ms", slow: true},
	{name: "200 not JSON", answer: send(http.StatusOK, "text/plain; charset=utf-8", "OK\nall good\n"),
		want: "the Kratos admin API's answer is not JSON (text/plain)"},
	{name: "200 HTML page", answer: send(http.StatusOK, "text/html; charset=utf-8", appPage),
		want: "the Kratos admin API's answer is not JSON (text/html)"},
	{name: "200 no Content-Type", answer: send(http.StatusOK, "", "garbage"),
		want: "the Kratos admin API's answer is not JSON (no Content-Type)"},
	{name: "200 truncated JSON", answer: func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		body := healthyBody(r)
		send(http.StatusOK, "application/json", body[:len(body)/2])(w, r, nil)
	}, want: "the Kratos admin API's answer is not valid JSON (unexpected end of JSON input)",
		wantDelete: "the Kratos admin API's answer has status 200 OK, where Kratos answers 204 No Content"},
	{name: "200 JSON as text/plain", answer: func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		send(http.StatusOK, "text/plain", healthyBody(r))(w, r, nil)
	}, want: "the Kratos admin API's answer is not JSON (text/plain)"},
	{name: "200 XML", answer: send(http.StatusOK, "application/xml", `<identity><id>`+faultID+`</id><schema_id>admin</schema_id></identity>`),
		want: "the Kratos admin API's answer is not JSON (application/xml)"},
	{name: "200 JSON object of the wrong shape", answer: send(http.StatusOK, "application/json", `{"unexpected":true}`),
		want:       "the Kratos admin API's answer is JSON of the wrong shape",
		wantDelete: "the Kratos admin API's answer has status 200 OK, where Kratos answers 204 No Content"},
	{name: "200 JSON array of the wrong shape", answer: send(http.StatusOK, "application/json", `[1,2,3]`),
		want:       "the Kratos admin API's answer is JSON of the wrong shape",
		wantDelete: "the Kratos admin API's answer has status 200 OK, where Kratos answers 204 No Content"},
	{name: "200 JSON null", answer: send(http.StatusOK, "application/json", "null"),
		want:       "the Kratos admin API's answer is JSON of the wrong shape (null)",
		wantDelete: "the Kratos admin API's answer has status 200 OK, where Kratos answers 204 No Content"},
	{name: "200 empty", answer: send(http.StatusOK, "application/json", ""),
		want:       "the Kratos admin API's answer is empty",
		wantDelete: "the Kratos admin API's answer has status 200 OK, where Kratos answers 204 No Content"},
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// faultVerb is one identity command; stdin feeds --password-stdin.
type faultVerb struct {
	args  []string
	stdin string
}

var faultVerbs = []faultVerb{
	{args: []string{"identity", "create-admin", "--username", "ada", "--email", freeEmail, "--password-stdin"}, stdin: password},
	{args: []string{"identity", "create-admin", "--username", "ada", "--email", freeEmail}},
	{args: []string{"identity", "get", faultID}},
	{args: []string{"identity", "get", "--email", faultEmail, "-o", "json"}},
	{args: []string{"identity", "list", "--page-size", "1"}},
	{args: []string{"identity", "delete", faultID}},
	{args: []string{"identity", "delete", "--email", faultEmail}},
	{args: []string{"identity", "reset-password", faultID}},
	{args: []string{"identity", "reset-password", "--email", faultEmail, "--password-stdin"}, stdin: password},
	{args: []string{"identity", "invalidate-sessions", faultID}},
	{args: []string{"identity", "reset-mfa", "--email", faultEmail, "--type", "totp"}},
	{args: []string{"identity", "oidc", "list", faultID}},
	{args: []string{"identity", "oidc", "unlink", faultID, "--credential-id", "github:1234"}},
}

// faultyKratos is healthyKratos answering its request number faultAt (from 1) with the fault.
type faultyKratos struct {
	mu       sync.Mutex
	requests []string // method and path of each request
	faultAt  int
	fault    func(http.ResponseWriter, *http.Request, <-chan struct{})
}

func (k *faultyKratos) serve(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
	k.mu.Lock()
	k.requests = append(k.requests, r.Method+" "+r.URL.Path)
	n := len(k.requests)
	k.mu.Unlock()
	if n == k.faultAt {
		k.fault(w, r, release)
		return
	}
	healthyKratos(w, r)
}

func (k *faultyKratos) seen() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.requests...)
}

// TestAdminAPIFaults: each identity verb against an admin API whose every request in turn fails,
// is slow, or answers garbage (the requests before it answered as Kratos does) exits 1 with one
// line "error: <operation>: <what was wrong>", nothing on stdout.
func TestAdminAPIFaults(t *testing.T) {
	for _, v := range faultVerbs {
		verb := strings.Join(v.args, " ")
		t.Run(verb, func(t *testing.T) {
			// The verb against the healthy stand-in: it succeeds, and its requests are the steps
			// a fault can hit.
			healthy := &faultyKratos{}
			url := standIn(t, healthy.serve)
			r := kk(t, v.stdin, append([]string{"--admin-url", url}, v.args...)...)
			if r.code != 0 {
				t.Fatalf("against a healthy admin API: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			steps := healthy.seen()
			t.Logf("requests: %q", steps)
			for _, f := range faults {
				for at := 1; at <= len(steps); at++ {
					k := &faultyKratos{faultAt: at, fault: f.answer}
					url := standIn(t, k.serve)
					args := []string{"--admin-url", url}
					if f.slow {
						args = append(args, "--admin-timeout", faultTimeout.String())
					}
					r := kk(t, v.stdin, append(args, v.args...)...)
					step := fmt.Sprintf("%s at %s (request %d of %d)", f.name, steps[at-1], at, len(steps))
					want := f.want
					if strings.HasPrefix(steps[at-1], http.MethodDelete) && f.wantDelete != "" {
						want = f.wantDelete
					}
					checkFault(t, step, r, want, url)
					if seen := k.seen(); len(seen) != at {
						t.Errorf("%s: %d requests, want %d (none after the fault): %q", step, len(seen), at, seen)
					}
				}
			}
		})
	}
}

// checkFault checks the outcome of one verb against one fault.
func checkFault(t *testing.T, step string, r result, want, url string) {
	t.Helper()
	stdout := r.stdout
	// create-admin without a password creates the account, then issues its recovery code: when
	// that fails the account exists, and stdout says so (nothing else).
	if strings.Contains(r.stderr, "account "+faultID+" created, but: ") {
		if stdout != "identity/"+faultID+" created (admin account ada <"+freeEmail+">)\n" {
			t.Errorf("%s: account created, recovery failed: stdout %q", step, stdout)
		}
		stdout = ""
	}
	switch {
	case r.code != 1:
		t.Errorf("%s: exit %d, want 1; stdout %q, stderr %q", step, r.code, r.stdout, r.stderr)
	case !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n"):
		t.Errorf("%s: stderr %q, want one line starting with \"error: \"", step, r.stderr)
	case stdout != "":
		t.Errorf("%s: stdout %q, want nothing", step, r.stdout)
	case !strings.Contains(r.stderr, want):
		t.Errorf("%s: stderr %q does not say %q", step, r.stderr, want)
	case !strings.Contains(r.stderr, "(admin API at "+url+")") && !strings.Contains(r.stderr, "the Kratos admin API answered"):
		t.Errorf("%s: stderr %q names neither Kratos's error nor the admin API's address", step, r.stderr)
	}
	for _, bad := range []string{"panic", "goroutine", ".go:", "<html", "<!DOCTYPE", "<!doctype", "<identity>", `"unexpected"`, "all good"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("%s: stderr holds %q: %q", step, bad, r.stderr)
		}
	}
	if len(r.stderr) > 400 {
		t.Errorf("%s: stderr is %d bytes long: %q", step, len(r.stderr), r.stderr)
	}
	if strings.HasPrefix(r.stderr, "error: the Kratos admin API") {
		t.Errorf("%s: stderr %q does not name the operation", step, r.stderr)
	}
	t.Logf("%s: exit %d: %s", step, r.code, strings.TrimSpace(r.stderr))
}

// TestAdminAPITextStaysOnOneLine: text from the admin API that ends up in an error (here an
// identity ID with line breaks, which could forge a line of output) is kept on the error's line.
func TestAdminAPITextStaysOnOneLine(t *testing.T) {
	forged := faultID + "\nidentity/" + faultID2 + " created\r"
	url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		i := faultIdentity(forged)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode([]interface{}{i})
	})
	r := kk(t, "", "--admin-url", url, "identity", "create-admin", "--username", "ada", "--email", faultEmail)
	r.oneLine(t, `email "`+faultEmail+`" is already used by identity `+faultID+`\nidentity/`+faultID2+` created\r`)
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
}
