package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// Hydra is a real Ory Hydra v2 (OAuth2 and OpenID Connect provider), with its state in memory.
type Hydra struct {
	// PublicURL is the issuer: /oauth2/auth, /oauth2/token, /.well-known/openid-configuration.
	PublicURL string
	// AdminURL is the admin API: clients, login and consent requests.
	AdminURL string
	Proc     *Proc
}

// HydraOptions tunes Hydra.
type HydraOptions struct {
	// Name distinguishes several Hydras in one bed (log file); default "hydra".
	Name string
	// Listen is the address of both APIs (default 127.0.0.1); the real node's pods need the
	// bridge gateway address.
	Listen string
	// LoginURL and ConsentURL are the login and consent apps Hydra sends the browser to with a
	// login_challenge / consent_challenge.
	LoginURL, ConsentURL string
	// ErrorURL is where Hydra shows errors to the browser (default: its own fallback page).
	ErrorURL string
}

// StartHydra starts Hydra with an in-memory SQLite database, its public and admin APIs on free
// ports of opts.Listen, over plain HTTP (--dev: the bed has no public TLS for it).
func (b *Bed) StartHydra(opts HydraOptions) (*Hydra, error) {
	bin, err := Tool("hydra")
	if err != nil {
		return nil, err
	}
	host := opts.Listen
	if host == "" {
		host = "127.0.0.1"
	}
	name := opts.Name
	if name == "" {
		name = "hydra"
	}
	pub, err := FreePortOn(host)
	if err != nil {
		return nil, err
	}
	adm, err := FreePortOn(host)
	if err != nil {
		return nil, err
	}
	if adm == pub {
		if adm, err = FreePortOn(host); err != nil {
			return nil, err
		}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	h := &Hydra{PublicURL: fmt.Sprintf("http://%s:%d/", host, pub), AdminURL: fmt.Sprintf("http://%s:%d", host, adm)}
	urls := map[string]any{"self": map[string]any{"issuer": h.PublicURL}, "login": opts.LoginURL, "consent": opts.ConsentURL}
	if opts.ErrorURL != "" {
		urls["error"] = opts.ErrorURL
	}
	cfg, err := yaml.Marshal(map[string]any{
		"dsn": "memory",
		"serve": map[string]any{
			"public": map[string]any{"host": host, "port": pub},
			"admin":  map[string]any{"host": host, "port": adm},
		},
		"urls":    urls,
		"secrets": map[string]any{"system": []string{hex.EncodeToString(secret)}},
		"oidc":    map[string]any{"subject_identifiers": map[string]any{"supported_types": []string{"public"}}},
		"log":     map[string]any{"level": "info", "leak_sensitive_values": false},
	})
	if err != nil {
		return nil, err
	}
	dir := b.Path(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfgPath := dir + "/hydra.yaml"
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	if h.Proc, err = b.Start(name, nil, bin, "serve", "all", "--dev", "--sqa-opt-out", "-c", cfgPath); err != nil {
		return nil, err
	}
	if err := h.Proc.WaitReady(60*time.Second, httpOK(h.AdminURL+"/health/ready", "", nil)); err != nil {
		return nil, err
	}
	if err := h.Proc.WaitReady(30*time.Second, httpOK(h.PublicURL+".well-known/openid-configuration", "", nil)); err != nil {
		return nil, err
	}
	return h, nil
}

// HydraClient is an OAuth2 client as Hydra's admin API takes and returns it.
type HydraClient struct {
	ClientID                string   `json:"client_id,omitempty"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	RedirectURIs            []string `json:"redirect_uris"`
	Scope                   string   `json:"scope"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
}

// CreateClient registers an OAuth2 client and returns it with the id Hydra gave it.
func (h *Hydra) CreateClient(ctx context.Context, c HydraClient) (HydraClient, error) {
	var out HydraClient
	err := h.admin(ctx, http.MethodPost, "/admin/clients", c, &out)
	return out, err
}

// LoginRequest is the part of a login request the tests read.
type LoginRequest struct {
	Challenge string   `json:"challenge"`
	Skip      bool     `json:"skip"`
	Subject   string   `json:"subject"`
	Scope     []string `json:"requested_scope"`
	Client    struct {
		ClientID string `json:"client_id"`
	} `json:"client"`
}

// LoginRequest fetches a login request by its challenge.
func (h *Hydra) LoginRequest(ctx context.Context, challenge string) (LoginRequest, error) {
	var out LoginRequest
	err := h.admin(ctx, http.MethodGet, "/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(challenge), nil, &out)
	return out, err
}

// AcceptLogin accepts a login request for subject and returns where the browser goes next.
func (h *Hydra) AcceptLogin(ctx context.Context, challenge, subject string) (string, error) {
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := h.admin(ctx, http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": subject}, &out)
	return out.RedirectTo, err
}

// ConsentRequest is the part of a consent request the tests read.
type ConsentRequest struct {
	Subject  string   `json:"subject"`
	Scope    []string `json:"requested_scope"`
	Audience []string `json:"requested_access_token_audience"`
}

// ConsentRequest fetches a consent request by its challenge.
func (h *Hydra) ConsentRequest(ctx context.Context, challenge string) (ConsentRequest, error) {
	var out ConsentRequest
	err := h.admin(ctx, http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(challenge), nil, &out)
	return out, err
}

// AcceptConsent grants the requested scopes and audience, with idToken as the ID token's extra
// claims, and returns where the browser goes next.
func (h *Hydra) AcceptConsent(ctx context.Context, challenge string, req ConsentRequest, idToken map[string]any) (string, error) {
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	body := map[string]any{"grant_scope": req.Scope, "grant_access_token_audience": req.Audience,
		"session": map[string]any{"id_token": idToken}}
	err := h.admin(ctx, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(challenge), body, &out)
	return out.RedirectTo, err
}

// admin calls Hydra's admin API with a JSON body (nil: none) and decodes the JSON answer into out.
func (h *Hydra) admin(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.AdminURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("hydra %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hydra %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}
