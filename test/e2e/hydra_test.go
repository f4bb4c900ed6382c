package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	kratos "github.com/ory/kratos-client-go"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/instance"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// The login UI the tests play: its host is never dialled (the browser never leaves the bed);
// each page the flows send the browser to is handled by the test as identity-platform-login-ui
// would handle it (the charm's UI, whose pages are <ui-url>/ui/<page>).
const (
	loginUIURL  = "https://login.example.com/"
	appCallback = "https://app.example.com/callback" // the OAuth2 client's redirect URI
)

// pkce is an RFC 7636 verifier and its S256 challenge.
func pkce(t *testing.T) (verifier, challenge string) {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomState(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokens exchanges an authorization code at Hydra's token endpoint as a public client with PKCE.
func tokens(t *testing.T, ctx context.Context, h *testbed.Hydra, clientID, code, verifier string) (idToken string, status int, body string) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCallback},
		"client_id": {clientID}, "code_verifier": {verifier}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.PublicURL+"oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
	}
	raw := new(strings.Builder)
	if err := json.NewDecoder(io.TeeReader(resp.Body, raw)).Decode(&out); err != nil {
		t.Fatalf("token endpoint: %s: %v", resp.Status, err)
	}
	return out.IDToken, resp.StatusCode, raw.String()
}

// verifiedClaims checks the ID token's signature against Hydra's published keys, its issuer and
// audience, and returns its claims.
func verifiedClaims(t *testing.T, ctx context.Context, h *testbed.Hydra, idToken, clientID string) map[string]any {
	t.Helper()
	tok, err := josejwt.ParseSigned(idToken, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.PublicURL+".well-known/jwks.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keys jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		t.Fatal(err)
	}
	var std josejwt.Claims
	var all map[string]any
	if err := tok.Claims(keys, &std, &all); err != nil {
		t.Fatalf("ID token signature: %v", err)
	}
	if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: h.PublicURL, AnyAudience: josejwt.Audience{clientID}, Time: time.Now()}, time.Minute); err != nil {
		t.Fatalf("ID token claims: %v (%v)", err, all)
	}
	return all
}

// The charm's Hydra relation, end to end: Kratos, injected with hydra-admin-url and ui-url, is
// Hydra's login provider. The test is the OAuth2 client (authorization code with PKCE, a public
// client) and the login UI; the browser reaches Kratos only through the bed's edge, configured
// from the shipped nginx Ingress. An identity made by `kubectl kratos identity create-admin`,
// its password set by `reset-password`, logs in: Kratos accepts Hydra's login request, the
// consent is granted, the code is exchanged, and the ID token (signature checked against Hydra's
// keys) names the Kratos identity as its subject. A wrong password yields no code and leaves
// Hydra's login request pending; with Hydra gone, Kratos's flow ends on the UI's error page with
// Kratos's own reason, and no session is issued.
func TestHydraLoginThroughInjectedKratos(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	b := theBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	hy, err := b.StartHydra(testbed.HydraOptions{Name: "hydra-login", Listen: network.Gateway,
		LoginURL: loginUIURL + "ui/login", ConsentURL: loginUIURL + "ui/consent", ErrorURL: loginUIURL + "ui/oidc_error"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := hy.CreateClient(ctx, testbed.HydraClient{GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"},
		RedirectURIs: []string{appCallback}, Scope: "openid", TokenEndpointAuthMethod: "none"})
	if err != nil {
		t.Fatal(err)
	}

	ns := namespace(t, s, "hydra")
	ing := exampleIngress(t, "ingress-nginx.yaml")
	public := "https://" + ing.Spec.Rules[0].Host + "/"
	edge, pod := shopBehindEdge(t, ctx, s, n, ns, ing, map[string]string{
		"kratos-injector.io/public-url":      public,
		"kratos-injector.io/ui-url":          loginUIURL,
		"kratos-injector.io/hydra-admin-url": hy.AdminURL,
	})

	// The user: made by the plugin, its password set by the plugin.
	const email, password = "ada@hydra.example", "Hydra-login-Pa55word-e2e"
	// Without a password, create-admin issues a recovery code and link: the link is the login
	// UI's recovery page (ui-url), not Kratos's fallback page.
	if out := kubectlKratos(t, s, ns, "identity", "create-admin", "--username", "ada", "--email", email); !strings.Contains(out, "recovery link: "+loginUIURL+"ui/recovery?flow=") {
		t.Fatalf("create-admin with a login UI does not print the UI's recovery link:\n%s", out)
	}
	bin, err := testbed.ProjectBin("kubectl-kratos")
	if err != nil {
		t.Fatal(err)
	}
	cli := &pluginCLI{bin: bin, args: []string{"--kubeconfig", adminKubeconfig(t, s), "-n", ns}}
	cli.run(t, password, "identity", "reset-password", "--email", email, "--password-stdin").ok(t)
	var got struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(cli.run(t, "", "identity", "get", "--email", email, "-o", "json").ok(t).stdout), &got); err != nil || got.ID == "" {
		t.Fatalf("identity get: %v", err)
	}

	// authorize starts an authorization at Hydra and follows it to the UI's login page, then to
	// Kratos, and returns the login challenge and the Kratos login flow the UI shows.
	authorize := func(br *browser, challenge, state string) (loginChallenge string, flow kratosFlow) {
		t.Helper()
		q := url.Values{"client_id": {client.ClientID}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {appCallback},
			"state": {state}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		to := redirect(t, "Hydra /oauth2/auth", br.get(hy.PublicURL+"oauth2/auth?"+q.Encode()), loginUIURL+"ui/login?")
		loginChallenge = to.Query().Get("login_challenge")
		if loginChallenge == "" {
			t.Fatalf("Hydra sent the browser to %s without a login_challenge", to)
		}
		// The UI hands the challenge to Kratos, which makes a login flow and sends the browser back
		// to the UI's login page with it.
		to = redirect(t, "Kratos login/browser", br.get(public+"self-service/login/browser?login_challenge="+url.QueryEscape(loginChallenge)),
			loginUIURL+"ui/login?flow=")
		br.getJSON(public+"self-service/login/flows?id="+url.QueryEscape(to.Query().Get("flow")), &flow)
		if flow.OAuth2LoginChallenge != loginChallenge || flow.OAuth2LoginRequest == nil || flow.OAuth2LoginRequest.Client.ClientID != client.ClientID {
			t.Fatalf("the login flow does not carry Hydra's login request: challenge %q, request %+v", flow.OAuth2LoginChallenge, flow.OAuth2LoginRequest)
		}
		if !strings.HasPrefix(flow.UI.Action, public+"self-service/login?flow=") {
			t.Fatalf("the flow's form posts to %s, want the public URL %s", flow.UI.Action, public)
		}
		return loginChallenge, flow
	}
	login := func(br *browser, flow kratosFlow, pw string) page {
		t.Helper()
		return br.submit(flow.UI.Action, loginUIURL+"ui/login?flow="+flow.ID, url.Values{"method": {"password"},
			"identifier": {email}, "password": {pw}, "csrf_token": {flow.csrf()}})
	}

	afw, err := instance.PortForward(ctx, s.CP.Config, s.CP.Client, pod, config.AdminPort)
	if err != nil {
		t.Fatal(err)
	}
	defer afw.Close()
	admin := kratosClient(afw.URL)

	br := newBrowser(t, edge.Roots, edge.Hosts(hy))
	verifier, challenge := pkce(t)
	state := randomState(t)
	lc, flow := authorize(br, challenge, state)

	t.Run("wrong password: no code", func(t *testing.T) {
		p := login(br, flow, "not-the-Pa55word")
		redirect(t, "wrong password", p, loginUIURL+"ui/login?flow="+flow.ID)
		var again kratosFlow
		br.getJSON(public+"self-service/login/flows?id="+flow.ID, &again)
		if !slices.ContainsFunc(again.messages(), func(m uiMessage) bool { return m.ID == 4000006 }) {
			t.Fatalf("the flow shows %v, want Kratos's invalid-credentials message (4000006)", again.messages())
		}
		lr, err := hy.LoginRequest(ctx, lc)
		if err != nil {
			t.Fatalf("Hydra's login request after a failed login: %v (want it still pending)", err)
		}
		if lr.Client.ClientID != client.ClientID {
			t.Fatalf("login request %+v", lr)
		}
		flow = again
	})

	// toCode logs in with the right password and grants the consent as the UI does, and
	// returns the authorization code Hydra sends to the client.
	toCode := func(t *testing.T, br *browser, flow kratosFlow, state string) string {
		t.Helper()
		to := redirect(t, "login", login(br, flow, password), hy.PublicURL+"oauth2/auth?")
		if to.Query().Get("login_verifier") == "" {
			t.Fatalf("Kratos sent the browser back to Hydra without a login_verifier: %s", to)
		}
		if !slices.ContainsFunc(br.cookies(public), func(c *http.Cookie) bool { return strings.HasPrefix(c.Name, "ory_kratos_session") }) {
			t.Errorf("no Kratos session cookie for %s after the login", public)
		}
		to = redirect(t, "Hydra after login", br.get(to.String()), loginUIURL+"ui/consent?")
		cc := to.Query().Get("consent_challenge")
		cr, err := hy.ConsentRequest(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		if cr.Subject != got.ID {
			t.Fatalf("Hydra's consent request is for subject %q, want the Kratos identity %s", cr.Subject, got.ID)
		}
		next, err := hy.AcceptConsent(ctx, cc, cr, nil)
		if err != nil {
			t.Fatal(err)
		}
		to = redirect(t, "Hydra after consent", br.get(next), appCallback+"?")
		if to.Query().Get("state") != state {
			t.Fatalf("state %q, want %q", to.Query().Get("state"), state)
		}
		code := to.Query().Get("code")
		if code == "" {
			t.Fatalf("no code in %s", to)
		}
		return code
	}

	t.Run("password login: code, token, sub", func(t *testing.T) {
		code := toCode(t, br, flow, state)
		idt, st, body := tokens(t, ctx, hy, client.ClientID, code, verifier)
		if st != http.StatusOK || idt == "" {
			t.Fatalf("token exchange: %d %s", st, body)
		}
		claims := verifiedClaims(t, ctx, hy, idt, client.ClientID)
		if claims["sub"] != got.ID {
			t.Fatalf("ID token sub %v, want the Kratos identity %s", claims["sub"], got.ID)
		}
		t.Logf("ID token: sub %v (the Kratos identity), iss %v, aud %v, amr %v", claims["sub"], claims["iss"], claims["aud"], claims["amr"])
		if _, st, _ := tokens(t, ctx, hy, client.ClientID, code, verifier); st == http.StatusOK {
			t.Error("the code was exchanged twice")
		}
	})

	t.Run("PKCE: a wrong verifier gets no token and spends the code", func(t *testing.T) {
		other := newBrowser(t, edge.Roots, edge.Hosts(hy))
		v2, c2 := pkce(t)
		st2 := randomState(t)
		_, f2 := authorize(other, c2, st2)
		code := toCode(t, other, f2, st2)
		if _, st, body := tokens(t, ctx, hy, client.ClientID, code, verifier); st == http.StatusOK {
			t.Fatalf("the token endpoint took another authorization's verifier: %s", body)
		}
		if _, st, body := tokens(t, ctx, hy, client.ClientID, code, v2); st == http.StatusOK {
			t.Fatalf("the code still worked after a failed PKCE check: %s", body)
		}
	})

	t.Run("Hydra unreachable: Kratos's error, no session", func(t *testing.T) {
		fresh := newBrowser(t, edge.Roots, edge.Hosts(hy))
		q := url.Values{"client_id": {client.ClientID}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {appCallback},
			"state": {randomState(t)}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		to := redirect(t, "Hydra /oauth2/auth", fresh.get(hy.PublicURL+"oauth2/auth?"+q.Encode()), loginUIURL+"ui/login?")
		lc := to.Query().Get("login_challenge")
		sessionsBefore := identitySessions(t, ctx, admin, got.ID)
		hy.Proc.Stop()
		to = redirect(t, "Kratos login/browser with Hydra down", fresh.get(public+"self-service/login/browser?login_challenge="+url.QueryEscape(lc)),
			loginUIURL+"ui/error?id=")
		var e struct {
			Error struct {
				Code   int    `json:"code"`
				Reason string `json:"reason"`
			} `json:"error"`
		}
		fresh.getJSON(public+"self-service/errors?id="+url.QueryEscape(to.Query().Get("id")), &e)
		if e.Error.Code != http.StatusInternalServerError || !strings.Contains(e.Error.Reason, "OAuth 2.0 Login Challenge") {
			t.Fatalf("Kratos's error for an unreachable Hydra: %+v", e.Error)
		}
		t.Logf("the UI's error page shows Kratos's error: %d %s", e.Error.Code, e.Error.Reason)
		if p := fresh.do(http.MethodGet, public+"sessions/whoami", nil, "application/json", ""); p.Status != http.StatusUnauthorized {
			t.Errorf("whoami after the failed flow: %s, want 401", p)
		}
		if after := identitySessions(t, ctx, admin, got.ID); after != sessionsBefore {
			t.Errorf("the identity has %d sessions, %d before the failed flow", after, sessionsBefore)
		}
	})
}

// identitySessions counts an identity's sessions (active or not) through the admin API.
func identitySessions(t *testing.T, ctx context.Context, admin *kratos.APIClient, id string) int {
	t.Helper()
	ss, resp, err := admin.IdentityAPI.ListIdentitySessions(ctx, id).Execute()
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return 0
	}
	if err != nil {
		t.Fatalf("sessions of %s: %v", id, err)
	}
	return len(ss)
}

// adminKubeconfig writes the bed's admin kubeconfig to a temp file.
func adminKubeconfig(t *testing.T, s *stack) string {
	t.Helper()
	p := t.TempDir() + "/admin.kubeconfig"
	if err := s.CP.WriteKubeconfig(p, "admin"); err != nil {
		t.Fatal(err)
	}
	return p
}

// The external-IdP relation with a real OpenID Connect provider: a second Hydra is the upstream
// IdP, named as a `generic` provider in an IdP Secret. `kubectl kratos status` gives the redirect
// URI Hydra's client must register, and the test registers exactly that one. A login through the
// upstream (its own login and consent app played by the test) creates a Kratos identity whose
// traits come from the ID token through the built-in claims mapper; `kubectl kratos identity oidc
// list` shows the link and `oidc unlink` removes it. A new login through the upstream then finds
// no linked account, and Kratos refuses to link it silently to the existing identity by its email
// (its account-linking rule: prove the existing account first).
func TestUpstreamOIDCThroughHydra(t *testing.T) {
	s, n := node(t)
	_, _ = webhook(t)
	b := theBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const upstreamUI = "https://accounts.upstream.example/"
	up, err := b.StartHydra(testbed.HydraOptions{Name: "hydra-upstream", Listen: network.Gateway,
		LoginURL: upstreamUI + "login", ConsentURL: upstreamUI + "consent"})
	if err != nil {
		t.Fatal(err)
	}

	ns := namespace(t, s, "upstream")
	const clientID, clientSecret = "kratos-e2e", "upstream-Client-Secret-e2e"
	createSecrets(t, ctx, s, ns, map[string]map[string]string{"upstream-idp": {"id": "upstream", "provider": "generic", "label": "Upstream",
		"client_id": clientID, "client_secret": clientSecret, "issuer_url": up.PublicURL}})
	ing := exampleIngress(t, "ingress-nginx.yaml")
	public := "https://" + ing.Spec.Rules[0].Host + "/"
	edge, _ := shopBehindEdge(t, ctx, s, n, ns, ing, map[string]string{
		"kratos-injector.io/public-url":  public,
		"kratos-injector.io/ui-url":      loginUIURL,
		"kratos-injector.io/idp-secrets": "upstream-idp",
	})

	// The redirect URI, as the operator reads it from the plugin, registered as is.
	var rep cli.StatusReport
	if err := json.Unmarshal([]byte(kubectlKratos(t, s, ns, "status", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	var redirectURI string
	for _, in := range rep.Instances {
		for _, p := range in.Providers {
			if p.ID == "upstream" && p.Verified {
				redirectURI = p.RedirectURI
			}
		}
	}
	if want := public + "self-service/methods/oidc/callback/upstream"; redirectURI != want {
		t.Fatalf("status shows redirect URI %q for provider upstream, want %q", redirectURI, want)
	}
	if _, err := up.CreateClient(ctx, testbed.HydraClient{ClientID: clientID, ClientSecret: clientSecret,
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, RedirectURIs: []string{redirectURI},
		Scope: "openid email profile", TokenEndpointAuthMethod: "client_secret_basic"}); err != nil {
		t.Fatal(err)
	}

	const subject, email, name = "upstream-user-4711", "grace@upstream.example", "Grace Hopper"
	// signIn starts a Kratos login flow, picks the upstream's button, and plays the upstream's
	// login and consent app; it returns where Kratos sends the browser after the callback.
	signIn := func(t *testing.T, br *browser) page {
		t.Helper()
		to := redirect(t, "Kratos login/browser", br.get(public+"self-service/login/browser"), loginUIURL+"ui/login?flow=")
		var flow kratosFlow
		br.getJSON(public+"self-service/login/flows?id="+url.QueryEscape(to.Query().Get("flow")), &flow)
		if !slices.Contains(flow.values("provider"), "upstream") {
			t.Fatalf("the login flow offers providers %v, want upstream", flow.values("provider"))
		}
		to = redirect(t, "choose upstream", br.submit(flow.UI.Action, loginUIURL+"ui/login?flow="+flow.ID,
			url.Values{"method": {"oidc"}, "provider": {"upstream"}, "csrf_token": {flow.csrf()}}), up.PublicURL+"oauth2/auth?")
		if got := to.Query().Get("redirect_uri"); got != redirectURI {
			t.Fatalf("Kratos asks the upstream to return to %q, want the registered %q", got, redirectURI)
		}
		if to.Query().Get("code_challenge_method") != "S256" {
			t.Errorf("Kratos did not use PKCE with a provider that supports it: %s", to)
		}
		to = redirect(t, "upstream /oauth2/auth", br.get(to.String()), upstreamUI+"login?")
		next, err := up.AcceptLogin(ctx, to.Query().Get("login_challenge"), subject)
		if err != nil {
			t.Fatal(err)
		}
		to = redirect(t, "upstream after login", br.get(next), upstreamUI+"consent?")
		cc := to.Query().Get("consent_challenge")
		cr, err := up.ConsentRequest(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		next, err = up.AcceptConsent(ctx, cc, cr, map[string]any{"email": email, "email_verified": true, "name": name})
		if err != nil {
			t.Fatal(err)
		}
		to = redirect(t, "upstream after consent", br.get(next), redirectURI+"?")
		if to.Query().Get("code") == "" {
			t.Fatalf("the upstream returned no code: %s", to)
		}
		return br.get(to.String())
	}

	br := newBrowser(t, edge.Roots, edge.Hosts(up))
	p := signIn(t, br)
	redirect(t, "Kratos callback", p, loginUIURL)
	var who struct {
		Identity struct {
			ID     string         `json:"id"`
			Traits map[string]any `json:"traits"`
		} `json:"identity"`
	}
	br.getJSON(public+"sessions/whoami", &who)
	if who.Identity.Traits["email"] != email || who.Identity.Traits["name"] != name {
		t.Fatalf("the identity's traits are %v, want the upstream's claims mapped (email %s, name %s)", who.Identity.Traits, email, name)
	}
	t.Logf("login through the upstream created identity %s with traits %v", who.Identity.ID, who.Identity.Traits)

	link := "upstream:" + subject
	if out := kubectlKratos(t, s, ns, "identity", "oidc", "list", "--email", email); !strings.Contains(out, "upstream") || !strings.Contains(out, subject) {
		t.Fatalf("oidc list does not show the link %s:\n%s", link, out)
	}
	out := kubectlKratos(t, s, ns, "identity", "oidc", "unlink", "--email", email, "--credential-id", link)
	t.Logf("oidc unlink: %s", out)
	if out := kubectlKratos(t, s, ns, "identity", "oidc", "list", "--email", email); strings.Contains(out, subject) {
		t.Fatalf("oidc list still shows %s after unlink:\n%s", link, out)
	}

	// The same upstream account again: no link, so Kratos tries to register it, finds the email
	// taken by the existing identity, and asks the user to sign in to that account first.
	again := newBrowser(t, edge.Roots, edge.Hosts(up))
	to := redirect(t, "upstream login after unlink", signIn(t, again), loginUIURL+"ui/login?flow=")
	var linking kratosFlow
	again.getJSON(public+"self-service/login/flows?id="+url.QueryEscape(to.Query().Get("flow")), &linking)
	// Kratos's "account already exists: sign in to link" message (text.InfoSelfServiceLoginLink).
	if !slices.ContainsFunc(linking.messages(), func(m uiMessage) bool { return m.ID == 1010016 && strings.Contains(m.Text, email) }) {
		t.Fatalf("after unlink, the upstream login shows %+v, want Kratos's account-linking message 1010016", linking.messages())
	}
	t.Logf("the upstream login after unlink: %s", linking.messages()[0].Text)
	if p2 := again.do(http.MethodGet, public+"sessions/whoami", nil, "application/json", ""); p2.Status == http.StatusOK {
		t.Fatalf("after unlink, the upstream login signed in without a link: %s", p2)
	}
}
