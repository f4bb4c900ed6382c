package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// browser is the tests' user agent for the self-service and OAuth2 flows: a cookie jar, TLS that
// trusts the bed's CA, redirects returned rather than followed (each hop is asserted), and a
// resolver that sends each known host to a bed address, as /etc/hosts would, and refuses every
// other host, so that no request of a flow can leave the machine.
type browser struct {
	t     *testing.T
	c     *http.Client
	hosts map[string]string // host:port as in the URL -> address dialled
}

func newBrowser(t *testing.T, roots *x509.CertPool, hosts map[string]string) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, hosts: hosts}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	b.c = &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				to, ok := b.hosts[addr]
				if !ok {
					return nil, fmt.Errorf("browser: no route to %s (not a host of the bed)", addr)
				}
				return dialer.DialContext(ctx, network, to)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b
}

// page is one answer the browser got.
type page struct {
	URL      string
	Status   int
	Location *url.URL // the redirect's target, resolved; nil when not a redirect
	Body     []byte
	Header   http.Header
}

func (p page) String() string {
	s := fmt.Sprintf("%d from %s", p.Status, p.URL)
	if p.Location != nil {
		s += " to " + p.Location.String()
	}
	if len(p.Body) > 0 && p.Location == nil {
		s += ": " + strings.TrimSpace(string(p.Body[:min(len(p.Body), 600)]))
	}
	return s
}

// get loads u as a browser navigating to it would (Accept: text/html).
func (b *browser) get(u string) page {
	b.t.Helper()
	return b.do(http.MethodGet, u, nil, "text/html,application/xhtml+xml", "")
}

// getJSON fetches u as a single-page UI does (Accept: application/json) and decodes the body.
func (b *browser) getJSON(u string, v any) {
	b.t.Helper()
	p := b.do(http.MethodGet, u, nil, "application/json", "")
	if p.Status != http.StatusOK {
		b.t.Fatalf("GET %s: %s", u, p)
	}
	if err := json.Unmarshal(p.Body, v); err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
}

// submit posts an HTML form to u, as the UI page at referer does.
func (b *browser) submit(u, referer string, form url.Values) page {
	b.t.Helper()
	return b.do(http.MethodPost, u, strings.NewReader(form.Encode()), "text/html,application/xhtml+xml", referer)
}

func (b *browser) do(method, u string, body io.Reader, accept, referer string) page {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if referer != "" {
		r, _ := url.Parse(referer)
		req.Header.Set("Referer", referer)
		req.Header.Set("Origin", r.Scheme+"://"+r.Host)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	p := page{URL: u, Status: resp.StatusCode, Body: data, Header: resp.Header}
	if loc, err := resp.Location(); err == nil {
		p.Location = loc
	}
	return p
}

// cookies returns the names of the cookies the browser would send to u.
func (b *browser) cookies(u string) []*http.Cookie {
	pu, err := url.Parse(u)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.c.Jar.Cookies(pu)
}

// redirect requires p to be a redirect whose target starts with prefix, and returns the target.
func redirect(t *testing.T, step string, p page, prefix string) *url.URL {
	t.Helper()
	if p.Status < 300 || p.Status > 399 || p.Location == nil {
		t.Fatalf("%s: want a redirect to %s, got %s", step, prefix, p)
	}
	if !strings.HasPrefix(p.Location.String(), prefix) {
		t.Fatalf("%s: redirect to %s, want %s…", step, p.Location, prefix)
	}
	return p.Location
}

// kratosFlow is the part of a self-service flow a UI reads.
type kratosFlow struct {
	ID                   string `json:"id"`
	RequestURL           string `json:"request_url"`
	OAuth2LoginChallenge string `json:"oauth2_login_challenge"`
	OAuth2LoginRequest   *struct {
		Client struct {
			ClientID string `json:"client_id"`
		} `json:"client"`
	} `json:"oauth2_login_request"`
	UI struct {
		Action   string      `json:"action"`
		Messages []uiMessage `json:"messages"`
		Nodes    []struct {
			Group      string `json:"group"`
			Attributes struct {
				Name  string `json:"name"`
				Value any    `json:"value"`
			} `json:"attributes"`
			Messages []uiMessage `json:"messages"`
		} `json:"nodes"`
	} `json:"ui"`
}

type uiMessage struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
	Type string `json:"type"`
}

// csrf is the flow's CSRF token field, which a browser form posts back ("" when absent).
func (f *kratosFlow) csrf() string {
	for _, n := range f.UI.Nodes {
		if n.Attributes.Name == "csrf_token" {
			if s, ok := n.Attributes.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}

// values lists the values of the flow's fields called name (the OIDC buttons: provider).
func (f *kratosFlow) values(name string) []string {
	var out []string
	for _, n := range f.UI.Nodes {
		if s, ok := n.Attributes.Value.(string); ok && n.Attributes.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// messages lists every message of the flow, the form's and its fields'.
func (f *kratosFlow) messages() []uiMessage {
	out := append([]uiMessage{}, f.UI.Messages...)
	for _, n := range f.UI.Nodes {
		out = append(out, n.Messages...)
	}
	return out
}
