package actions_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// The login UI's pages, with a real Kratos serving the config the injector renders for a pod's
// annotations: with ui-url, every browser flow and the admin-issued recovery lead to
// <ui-url>/ui/<page>; without, to Kratos's defaults, its documentation's fallback pages, and the
// recovery has no link (what the plugin then prints is followed here to a new password).

// testUI is the ui-url: under a path and with a trailing slash, as an operator may write it.
const testUI = "https://login.example.test/base/"

// kratosFallback is Kratos's default ui_url of every flow, <kratosFallback><flow>.
const kratosFallback = "https://www.ory.sh/kratos/docs/fallback/"

// TestLoginUIFlows runs one Kratos rendered with ui-url and one without.
func TestLoginUIFlows(t *testing.T) {
	for _, tc := range []struct {
		name, ui string
		page     func(page string) string
	}{
		{"with ui-url", testUI, func(p string) string { return strings.TrimSuffix(testUI, "/") + "/ui/" + p }},
		{"without ui-url", "", func(p string) string { return kratosFallback + p }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			annotations := map[string]string{inject.AnnotationFeatures: "local-idp,recovery,verification", inject.AnnotationLogLevel: "warning"}
			if tc.ui != "" {
				annotations[inject.AnnotationUIURL] = tc.ui
			}
			spec, err := inject.ParseAnnotations(annotations, "")
			if err != nil {
				t.Fatal(err)
			}
			srv, err := kratostest.StartRendered(*spec)
			if err != nil {
				t.Fatalf("start Kratos with the rendered config: %v", err)
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("--- end of kratos log ---\n%s", srv.LogTail(30))
				}
				srv.Stop()
			})
			c, err := actions.NewClient(srv.AdminURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			b := newBrowser(t, srv)

			t.Run("browser flows", func(t *testing.T) {
				for _, flow := range []string{"login", "registration", "recovery", "verification"} {
					loc := b.redirect(http.MethodGet, "/self-service/"+flow+"/browser", nil)
					b.wantPage(loc, tc.page(flow), "flow")
				}
				// An error of a browser flow (a return_to that is not allowed) goes to the error
				// page, with the ID under which the public API serves the error.
				loc := b.redirect(http.MethodGet, "/self-service/login/browser?return_to="+url.QueryEscape("https://elsewhere.example.test/"), nil)
				id := b.wantPage(loc, tc.page("error"), "id")
				if st, body := b.get("/self-service/errors?id=" + url.QueryEscape(id)); st != http.StatusOK || !strings.Contains(body, "return_to") {
					t.Errorf("GET /self-service/errors?id=%s: HTTP %d %.300s", id, st, body)
				}
				// Settings needs a session: without one the browser is sent to log in.
				if loc := b.redirect(http.MethodGet, "/self-service/settings/browser", nil); !strings.Contains(loc.Path, "/login") {
					t.Errorf("settings without a session redirects to %s, want a login page", loc)
				}
			})

			t.Run("create-admin recovery", func(t *testing.T) {
				mail := email(t, "admin")
				res, err := actions.CreateAdmin(ctx(t), c, actions.AdminAccount{
					Username: strings.Split(mail, "@")[0], Email: mail, LoginUI: tc.ui,
				})
				if err != nil {
					t.Fatal(err)
				}
				r := res.Recovery
				checkUIRecovery(t, srv, r, tc.ui, tc.page)
				if tc.ui != "" {
					// The owner opens the link: the UI shows the flow, where the code is submitted
					// (a form post); Kratos signs them in and sends the browser on to the UI's
					// settings page, where the new password is chosen.
					owner := newBrowser(t, srv)
					loc := owner.redirect(http.MethodPost, "/self-service/recovery?flow="+url.QueryEscape(r.FlowID),
						url.Values{"method": {"code"}, "code": {r.RecoveryCode}})
					owner.wantPage(loc, tc.page("settings"), "flow")
					if !owner.hasSession() {
						t.Fatal("submitting the recovery code gave no session cookie")
					}
					// With the session, a new settings flow opens on the UI's settings page too.
					owner.wantPage(owner.redirect(http.MethodGet, "/self-service/settings/browser", nil), tc.page("settings"), "flow")
					return
				}
				// No login UI: what the plugin says to do with the code, done by hand.
				owner := newBrowser(t, srv)
				settings := owner.submitRecoveryCodeJSON(r.FlowID, r.RecoveryCode)
				owner.wantPage(settings, tc.page("settings"), "flow")
				const newPassword = "Another-Correct-Horse-7"
				owner.setPassword(settings.Query().Get("flow"), newPassword)
				if _, err := srv.LoginPassword(ctx(t), mail, newPassword); err != nil {
					t.Fatalf("the password set in the settings flow does not log in: %v", err)
				}
			})

			t.Run("reset-password recovery", func(t *testing.T) {
				mail := email(t, "user")
				i := createUser(t, c, mail, "")
				res, err := actions.ResetPassword(ctx(t), c, actions.PasswordReset{Ref: actions.Ref{ID: i.Id}, LoginUI: tc.ui})
				if err != nil {
					t.Fatal(err)
				}
				checkUIRecovery(t, srv, res.Recovery, tc.ui, tc.page)
			})

			if tc.ui == "" {
				// A pod whose ui-url annotation Kratos does not run with (set after it started):
				// the annotation is named, but never makes a link.
				t.Run("stale annotation", func(t *testing.T) {
					i := createUser(t, c, email(t, "user"), "")
					res, err := actions.ResetPassword(ctx(t), c, actions.PasswordReset{Ref: actions.Ref{ID: i.Id}, LoginUI: testUI})
					if err != nil {
						t.Fatal(err)
					}
					if res.Recovery.HasLoginUI() || res.Recovery.RecoveryLink != "" || res.Recovery.LoginUI != testUI {
						t.Fatalf("recovery %+v: want no link, login UI %s", res.Recovery, testUI)
					}
				})
			}
		})
	}
}

// checkUIRecovery checks an admin-issued recovery: with a login UI, a link to the UI's recovery
// page for a flow; without, no link; in both, a flow the public API serves (as it serves it to
// the UI's page) and a 6-digit code.
func checkUIRecovery(t *testing.T, srv *kratostest.Server, r *actions.Recovery, ui string, page func(string) string) {
	t.Helper()
	if r == nil || r.FlowID == "" || len(r.RecoveryCode) != 6 {
		t.Fatalf("recovery %+v: want a flow and a 6-digit code", r)
	}
	if r.LoginUI != ui {
		t.Errorf("recovery names login UI %q, want %q", r.LoginUI, ui)
	}
	if ui != "" {
		want := page("recovery") + "?flow=" + r.FlowID
		if r.RecoveryLink != want || !r.HasLoginUI() {
			t.Errorf("recovery link %q, want %s", r.RecoveryLink, want)
		}
		u, err := url.Parse(r.RecoveryLink)
		if err != nil || u.Host != "login.example.test" || u.Path != "/base/ui/recovery" || u.Query().Get("flow") != r.FlowID {
			t.Errorf("recovery link %q: want host login.example.test, path /base/ui/recovery, flow %s", r.RecoveryLink, r.FlowID)
		}
	} else if r.RecoveryLink != "" || r.HasLoginUI() {
		t.Errorf("no login UI, but a recovery link %q", r.RecoveryLink)
	}
	// The flow the link (or the plugin's hint) names is a recovery flow waiting for the code.
	b := newBrowser(t, srv)
	st, body := b.get("/self-service/recovery/flows?id=" + url.QueryEscape(r.FlowID))
	var f struct {
		ID    string `json:"id"`
		State string `json:"state"`
		UI    struct {
			Action string `json:"action"`
		} `json:"ui"`
	}
	if st != http.StatusOK || json.Unmarshal([]byte(body), &f) != nil {
		t.Fatalf("GET /self-service/recovery/flows?id=%s: HTTP %d %.300s", r.FlowID, st, body)
	}
	if f.ID != r.FlowID || f.State != "sent_email" || f.UI.Action != srv.PublicURL+"/self-service/recovery?flow="+r.FlowID {
		t.Errorf("recovery flow %s: id %s, state %s, action %s", r.FlowID, f.ID, f.State, f.UI.Action)
	}
}

// browser talks to Kratos's public API as a browser: cookies kept, redirects not followed.
type browser struct {
	t   *testing.T
	srv *kratostest.Server
	hc  *http.Client
}

func newBrowser(t *testing.T, srv *kratostest.Server) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, srv: srv, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.hc.Do(req.WithContext(ctx(b.t)))
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// redirect requests path as a browser (a form post when form is not nil) and returns where the
// 303 answer sends it.
func (b *browser) redirect(method, path string, form url.Values) *url.URL {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.srv.PublicURL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, text := b.do(req)
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusSeeOther || err != nil {
		b.t.Fatalf("%s %s: HTTP %d, want 303 See Other with a Location: %.300s", method, path, resp.StatusCode, text)
	}
	return loc
}

// wantPage checks that loc is page with a query parameter param (flow, or id for errors) and
// nothing else, and returns the parameter.
func (b *browser) wantPage(loc *url.URL, page, param string) string {
	b.t.Helper()
	v := loc.Query().Get(param)
	if got := strings.TrimSuffix(loc.String(), "?"+loc.RawQuery); got != page || v == "" || len(loc.Query()) != 1 {
		b.t.Errorf("redirected to %s, want %s?%s=<id>", loc, page, param)
	}
	return v
}

// get fetches path as JSON.
func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.PublicURL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, body := b.do(req)
	return resp.StatusCode, body
}

func (b *browser) postJSON(path string, v any) (int, string) {
	b.t.Helper()
	j, _ := json.Marshal(v)
	req, err := http.NewRequest(http.MethodPost, b.srv.PublicURL+path, bytes.NewReader(j))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, body := b.do(req)
	return resp.StatusCode, body
}

func (b *browser) hasSession() bool {
	u, _ := url.Parse(b.srv.PublicURL)
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == "ory_kratos_session" {
			return true
		}
	}
	return false
}

// submitRecoveryCodeJSON submits the code to the flow as the plugin's hint says (JSON, keeping
// the cookies) and returns where Kratos sends the browser next: its settings flow.
func (b *browser) submitRecoveryCodeJSON(flowID, code string) *url.URL {
	b.t.Helper()
	st, body := b.postJSON("/self-service/recovery?flow="+url.QueryEscape(flowID), map[string]string{"method": "code", "code": code})
	var res struct {
		RedirectBrowserTo string `json:"redirect_browser_to"`
	}
	// A browser flow answers a JSON request with "browser location change required".
	if st != http.StatusUnprocessableEntity || json.Unmarshal([]byte(body), &res) != nil || res.RedirectBrowserTo == "" || !b.hasSession() {
		b.t.Fatalf("submit the recovery code: HTTP %d (session cookie %v): %.300s", st, b.hasSession(), body)
	}
	u, err := url.Parse(res.RedirectBrowserTo)
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// setPassword sets the session's password in the settings flow.
func (b *browser) setPassword(flowID, pw string) {
	b.t.Helper()
	st, body := b.get("/self-service/settings/flows?id=" + url.QueryEscape(flowID))
	var f struct {
		UI struct {
			Nodes []struct {
				Attributes struct {
					Name  string `json:"name"`
					Value any    `json:"value"`
				} `json:"attributes"`
			} `json:"nodes"`
		} `json:"ui"`
	}
	if st != http.StatusOK || json.Unmarshal([]byte(body), &f) != nil {
		b.t.Fatalf("GET settings flow %s: HTTP %d %.300s", flowID, st, body)
	}
	csrf := ""
	for _, n := range f.UI.Nodes {
		if n.Attributes.Name == "csrf_token" {
			csrf = fmt.Sprint(n.Attributes.Value)
		}
	}
	st, body = b.postJSON("/self-service/settings?flow="+url.QueryEscape(flowID),
		map[string]string{"method": "password", "password": pw, "csrf_token": csrf})
	if st != http.StatusOK {
		b.t.Fatalf("set the password in settings flow %s: HTTP %d %.300s", flowID, st, body)
	}
}
