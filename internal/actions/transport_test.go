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
