package actions_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// standIn is an admin API stand-in on 127.0.0.1 (no Kratos: these answers are the point); its
// handlers are released when the test ends.
func standIn(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, release <-chan struct{})) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler(w, r, release) }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv.URL
}

// TestResponseSizeLimit: an answer larger than MaxResponseBytes, announced or endless, success
// or error, fails with ErrResponseTooLarge; what the stand-in could send before the client
// stopped reading is bounded (the limit plus the sockets' buffers), so the client's memory is.
// An answer of exactly the limit is read.
func TestResponseSizeLimit(t *testing.T) {
	const huge = 300 << 20
	for _, tc := range []struct {
		name   string
		length int64 // announced Content-Length; 0: chunked
		status int
	}{
		{"endless", 0, http.StatusOK},
		{"300 MiB announced", huge, http.StatusOK},
		{"endless error answer", 0, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				if tc.length > 0 {
					w.Header().Set("Content-Length", fmt.Sprint(tc.length))
				}
				w.WriteHeader(tc.status)
				fill := []byte(strings.Repeat(" ", 64<<10))
				for sent.Load() < huge {
					n, err := w.Write(fill)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			})
			c, err := actions.NewClient(url, &http.Client{Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			_, err = actions.ListIdentities(ctx(t), c, actions.ListOptions{})
			if !errors.Is(err, actions.ErrResponseTooLarge) {
				t.Fatalf("got %v, want ErrResponseTooLarge", err)
			}
			if want := "list identities (page 1): the Kratos admin API's response is larger than 16 MiB (the plugin's limit): refused"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if sent.Load() >= 64<<20 {
				t.Errorf("the stand-in sent %d MiB: the client kept reading", sent.Load()>>20)
			}
		})
	}

	t.Run("exactly the limit", func(t *testing.T) {
		url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "["+strings.Repeat(" ", int(actions.MaxResponseBytes)-2)+"]")
		})
		c, err := actions.NewClient(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ids, err := actions.ListIdentities(ctx(t), c, actions.ListOptions{}); err != nil || len(ids) != 0 {
			t.Fatalf("an answer of exactly MaxResponseBytes: %v, %v", ids, err)
		}
	})
}

// TestTimeout: no answer, or an answer whose body trickles, fails with ErrTimeout after the
// http.Client's Timeout, in a message that names the limit and not the URL.
func TestTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
	}{
		{"no answer", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
		{"body trickles", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "[")
			for {
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-release:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := io.WriteString(w, " "); err != nil {
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := standIn(t, tc.handler)
			c, err := actions.NewClient(url, &http.Client{Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			_, err = actions.GetIdentity(ctx(t), c, actions.Ref{Email: "nobody@example.test"})
			want := `look up identity by email "nobody@example.test": the Kratos admin API did not answer within 300ms`
			if !errors.Is(err, actions.ErrTimeout) || err.Error() != want {
				t.Fatalf("got %v; want ErrTimeout, %q", err, want)
			}
		})
	}
}

// TestMalformedAnswers: a success answer that is not Kratos's fails with ErrMalformed and a
// message saying what is wrong with it; an error answer that is not Kratos's JSON is an APIError
// quoting one line of it. Neither quotes the body beyond a line.
func TestMalformedAnswers(t *testing.T) {
	page := "<!DOCTYPE html>\n<html><head><title>Sign in\n - Shop</title></head>\n<body>" + strings.Repeat("<p>x</p>\n", 200) + "</body></html>\n"
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
		malformed   bool
	}{
		{"HTML page", 200, "text/html; charset=utf-8", page, "is not JSON (text/html)", true},
		{"XML", 200, "application/xml", "<identities/>", "is not JSON (application/xml)", true},
		{"no Content-Type", 200, "", "[]", "is not JSON (no Content-Type)", true},
		{"truncated", 200, "application/json", `[{"id":"a`, "is not valid JSON (unexpected end of JSON input)", true},
		{"object for a list", 200, "application/json", `{"id":"a"}`, "is JSON of the wrong shape (an object where an array belongs)", true},
		{"numbers for identities", 200, "application/json", `[1]`, "is JSON of the wrong shape (a number where an object belongs)", true},
		{"null", 200, "application/json", `null`, "is JSON of the wrong shape (null)", true},
		{"empty", 200, "application/json", ``, "is empty", true},
		{"Kratos error, several lines", 500, "application/json", `{"error":{"code":500,"status":"Internal Server Error","message":"first\nsecond"}}`,
			"the Kratos admin API answered 500 Internal Server Error: first…", false},
		{"HTML error page", 502, "text/html", page, "the Kratos admin API answered 502 Bad Gateway with text/html, not a Kratos error: Sign in…", false},
		{"long text error", 503, "text/plain", strings.Repeat("overload ", 100), "the Kratos admin API answered 503 Service Unavailable with text/plain, not a Kratos error: overload overload", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
				w.Header()["Content-Type"] = nil // no sniffing
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			c, err := actions.NewClient(url, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := actions.ListIdentities(ctx(t), c, actions.ListOptions{})
			if err == nil {
				t.Fatalf("answer accepted: %d identities", len(ids))
			}
			t.Logf("%v", err)
			if errors.Is(err, actions.ErrMalformed) != tc.malformed {
				t.Errorf("errors.Is(err, ErrMalformed) = %v, want %v", !tc.malformed, tc.malformed)
			}
			if !strings.HasPrefix(err.Error(), "list identities (page 1): ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\n\r") || len(err.Error()) > 300 {
				t.Errorf("error %q is not one short line", err)
			}
		})
	}

	// A delete is answered 204 No Content: a 200, whatever its body, is not a deletion.
	url := standIn(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	})
	c, err := actions.NewClient(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = actions.DeleteIdentity(ctx(t), c, actions.Ref{ID: "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"})
	want := "delete identity 9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51: the Kratos admin API's answer has status 200 OK, where Kratos answers 204 No Content"
	if !errors.Is(err, actions.ErrMalformed) || err.Error() != want {
		t.Fatalf("delete answered 200: got %v, want %q", err, want)
	}
}
