package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The public API behind the bed's edge (Debian's nginx, the data plane of ingress-nginx, set up
// from the shipped Ingress examples and the shipped Service's endpoints), at a host's root and
// under a path prefix: a registration, then a login, then whoami, all through the edge with TLS
// terminated there; every flow URL and redirect names the public URL, the cookies are host-only
// and Secure for the public host, and the admin API is not reachable through the edge (Kratos's
// public port answers its paths with a redirect to its own loopback admin address, which the
// edge never serves), while `kubectl kratos` reaches it through the API server.
func TestPublicAPIBehindEdge(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	for _, tc := range []struct {
		name, ingress, prefix, ui string
	}{
		{"root", "ingress-nginx.yaml", "/", loginUIURL},
		{"prefix", "ingress-nginx-prefix.yaml", "/auth/", "https://shop.example.com/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			ns := namespace(t, s, "edge-"+tc.name)
			ing := exampleIngress(t, tc.ingress)
			public := "https://" + ing.Spec.Rules[0].Host + tc.prefix
			edge, _ := shopBehindEdge(t, ctx, s, n, ns, ing, map[string]string{
				"kratos-injector.io/public-url": public,
				"kratos-injector.io/ui-url":     tc.ui,
			})
			br := newBrowser(t, edge.Roots, edge.Hosts())
			const password = "Edge-round-trip-Pa55word"
			email := "edge-" + tc.name + "@shop.example"
			rememberSecret("the edge test's password", password)

			// Registration: Kratos's redirects and the flow's form name the public URL.
			first := br.get(public + "self-service/registration/browser")
			to := redirect(t, "registration/browser", first, tc.ui+"ui/registration?flow=")
			csrf := hostOnlySecure(t, setCookies(first), "csrf_token")
			var flow kratosFlow
			br.getJSON(public+"self-service/registration/flows?id="+url.QueryEscape(to.Query().Get("flow")), &flow)
			// (The flow's request_url is the request as Kratos received it: the public host, from
			// X-Forwarded-Host, but under a prefix without it, as the proxy stripped it.)
			if !strings.HasPrefix(flow.UI.Action, public+"self-service/registration?flow=") || !strings.HasPrefix(flow.RequestURL, "https://"+ing.Spec.Rules[0].Host+"/") {
				t.Fatalf("the registration flow's URLs (request %s, action %s) are not the public URL %s", flow.RequestURL, flow.UI.Action, public)
			}
			p := br.submit(flow.UI.Action, tc.ui+"ui/registration?flow="+flow.ID, url.Values{"method": {"password"},
				"traits.email": {email}, "password": {password}, "csrf_token": {flow.csrf()}})
			if p.Status != http.StatusSeeOther || p.Location == nil || strings.Contains(p.Location.String(), "flow="+flow.ID) {
				t.Fatalf("registration through the edge: %s", p)
			}
			t.Logf("registered %s: %s; CSRF cookie %s (host-only, Secure, path %s)", email, p, csrf.Name, csrf.Path)

			// Login in a new browser, then whoami: the session cookie is the public host's.
			lb := newBrowser(t, edge.Roots, edge.Hosts())
			to = redirect(t, "login/browser", lb.get(public+"self-service/login/browser"), tc.ui+"ui/login?flow=")
			var login kratosFlow
			lb.getJSON(public+"self-service/login/flows?id="+url.QueryEscape(to.Query().Get("flow")), &login)
			p = lb.submit(login.UI.Action, tc.ui+"ui/login?flow="+login.ID, url.Values{"method": {"password"},
				"identifier": {email}, "password": {password}, "csrf_token": {login.csrf()}})
			redirect(t, "login", p, tc.ui)
			session := hostOnlySecure(t, setCookies(p), "ory_kratos_session")
			var who struct {
				Identity struct {
					ID     string         `json:"id"`
					Traits map[string]any `json:"traits"`
				} `json:"identity"`
			}
			lb.getJSON(public+"sessions/whoami", &who)
			if who.Identity.Traits["email"] != email {
				t.Fatalf("whoami through the edge: %+v", who)
			}
			// Host-only: another host (the app's, when Kratos is at the host's root) gets none.
			other := "https://app.example.com/"
			if slices.ContainsFunc(lb.cookies(other), func(c *http.Cookie) bool { return c.Name == session.Name }) {
				t.Errorf("the session cookie is sent to %s too", other)
			}

			// The admin API is not behind the edge: its paths answer no identity data.
			for _, path := range []string{"admin/identities", "admin/health/ready", "identities"} {
				p := lb.do(http.MethodGet, public+path, nil, "application/json", "")
				if p.Status == http.StatusOK || strings.Contains(string(p.Body), email) {
					t.Errorf("GET %s%s through the edge: %s", public, path, p)
					continue
				}
				if p.Location != nil && p.Location.Host == ing.Spec.Rules[0].Host {
					t.Errorf("GET %s%s through the edge redirects within the public host: %s", public, path, p)
				}
				t.Logf("GET %s%s through the edge: %d %v", public, path, p.Status, p.Location)
			}
			// ... and kubectl kratos is the admin door.
			var got struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(kubectlKratos(t, s, ns, "identity", "get", "--email", email, "-o", "json")), &got); err != nil || got.ID != who.Identity.ID {
				t.Fatalf("kubectl kratos identity get: %v (id %q, whoami %q)", err, got.ID, who.Identity.ID)
			}
		})
	}
}

// setCookies parses the Set-Cookie headers of an answer.
func setCookies(p page) []*http.Cookie {
	return (&http.Response{Header: p.Header}).Cookies()
}

// hostOnlySecure returns the cookie whose name starts with prefix, requiring it host-only (no
// Domain: only the host that set it gets it back), Secure and HttpOnly.
func hostOnlySecure(t *testing.T, cookies []*http.Cookie, prefix string) *http.Cookie {
	t.Helper()
	for _, c := range cookies {
		if strings.HasPrefix(c.Name, prefix) {
			if c.Domain != "" || !c.Secure || !c.HttpOnly {
				t.Fatalf("cookie %s: Domain %q, Secure %v, HttpOnly %v; want host-only, Secure, HttpOnly", c.Name, c.Domain, c.Secure, c.HttpOnly)
			}
			return c
		}
	}
	t.Fatalf("no %s… cookie set", prefix)
	return nil
}
