package kratostest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The self-service API, driven as a native app (API flows, session tokens) would.

// HTTPError is an unexpected answer of the public API.
type HTTPError struct {
	Op     string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	body := e.Body
	if len(body) > 600 {
		body = body[:600] + "..."
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.Status, body)
}

func (s *Server) do(ctx context.Context, method, url, token string, body interface{}) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("X-Session-Token", token)
	}
	hc := s.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type flow struct {
	ID string `json:"id"`
	UI struct {
		Action string `json:"action"`
		Nodes  []struct {
			Group      string `json:"group"`
			Type       string `json:"type"`
			Attributes struct {
				ID   string `json:"id"`
				Name string `json:"name"`
				Text struct {
					Text string `json:"text"`
				} `json:"text"`
			} `json:"attributes"`
		} `json:"nodes"`
	} `json:"ui"`
}

func (s *Server) newFlow(ctx context.Context, kind, token string) (*flow, error) {
	op := "create " + kind + " flow"
	status, b, err := s.do(ctx, http.MethodGet, s.PublicURL+"/self-service/"+kind+"/api", token, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if status != http.StatusOK {
		return nil, &HTTPError{Op: op, Status: status, Body: string(b)}
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &f, nil
}

// LoginPassword logs in with the password method through an API login flow and returns the
// session token. A refused password is an *HTTPError with status 400.
func (s *Server) LoginPassword(ctx context.Context, identifier, password string) (string, error) {
	f, err := s.newFlow(ctx, "login", "")
	if err != nil {
		return "", err
	}
	status, b, err := s.do(ctx, http.MethodPost, f.UI.Action, "", map[string]string{
		"method": "password", "identifier": identifier, "password": password,
	})
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	if status != http.StatusOK {
		return "", &HTTPError{Op: "login as " + identifier, Status: status, Body: string(b)}
	}
	var res struct {
		SessionToken string `json:"session_token"`
	}
	if err := json.Unmarshal(b, &res); err != nil || res.SessionToken == "" {
		return "", fmt.Errorf("login: no session token in %s", b)
	}
	return res.SessionToken, nil
}

// Register signs a user up through an API registration flow with the password method and the
// given traits (default schema), as anyone on the public API may, and returns the new
// identity's ID.
func (s *Server) Register(ctx context.Context, traits map[string]interface{}, password string) (string, error) {
	f, err := s.newFlow(ctx, "registration", "")
	if err != nil {
		return "", err
	}
	status, b, err := s.do(ctx, http.MethodPost, f.UI.Action, "", map[string]interface{}{
		"method": "password", "password": password, "traits": traits,
	})
	if err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	if status != http.StatusOK {
		return "", &HTTPError{Op: "register", Status: status, Body: string(b)}
	}
	var res struct {
		Identity struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Identity.ID == "" {
		return "", fmt.Errorf("register: no identity in %s", b)
	}
	return res.Identity.ID, nil
}

// Whoami checks a session token: nil when valid, ErrUnauthorized when revoked or unknown.
func (s *Server) Whoami(ctx context.Context, token string) error {
	status, b, err := s.do(ctx, http.MethodGet, s.PublicURL+"/sessions/whoami", token, nil)
	switch {
	case err != nil:
		return fmt.Errorf("whoami: %w", err)
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status != http.StatusOK:
		return &HTTPError{Op: "whoami", Status: status, Body: string(b)}
	}
	return nil
}

func (s *Server) submitSettings(ctx context.Context, token string, f *flow, body map[string]interface{}) (*flow, error) {
	status, b, err := s.do(ctx, http.MethodPost, f.UI.Action, token, body)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if status != http.StatusOK {
		return nil, &HTTPError{Op: fmt.Sprintf("settings (%v)", body["method"]), Status: status, Body: string(b)}
	}
	var next flow
	if err := json.Unmarshal(b, &next); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return &next, nil
}

// EnrolTOTP sets up TOTP for the session's identity through a settings flow, answering with a
// code computed from the secret the flow shows, as an authenticator app would.
func (s *Server) EnrolTOTP(ctx context.Context, token string) error {
	f, err := s.newFlow(ctx, "settings", token)
	if err != nil {
		return err
	}
	secret := ""
	for _, n := range f.UI.Nodes {
		if n.Attributes.ID == "totp_secret_key" {
			secret = n.Attributes.Text.Text
		}
	}
	if secret == "" {
		return fmt.Errorf("settings flow shows no totp_secret_key (is TOTP enabled?)")
	}
	code, err := totpCode(secret, time.Now())
	if err != nil {
		return err
	}
	_, err = s.submitSettings(ctx, token, f, map[string]interface{}{"method": "totp", "totp_code": code})
	return err
}

// EnrolLookupSecret generates and confirms recovery codes (lookup secrets) for the session's
// identity through a settings flow.
func (s *Server) EnrolLookupSecret(ctx context.Context, token string) error {
	f, err := s.newFlow(ctx, "settings", token)
	if err != nil {
		return err
	}
	f, err = s.submitSettings(ctx, token, f, map[string]interface{}{"method": "lookup_secret", "lookup_secret_regenerate": true})
	if err != nil {
		return err
	}
	_, err = s.submitSettings(ctx, token, f, map[string]interface{}{"method": "lookup_secret", "lookup_secret_confirm": true})
	return err
}

// totpCode is RFC 6238 with Kratos's parameters: SHA-1, 30 s steps, 6 digits.
func totpCode(secret string, t time.Time) (string, error) {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.TrimRight(secret, "=")))
	if err != nil {
		return "", fmt.Errorf("totp secret %q: %w", secret, err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(t.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000), nil
}
