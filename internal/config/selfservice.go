package config

import (
	"net/url"
	"strings"
)

// features are the charm's switches as the charm's template (canonical/kratos-operator,
// templates/kratos.yaml.j2) combines them: enable_local_idp, enforce_mfa,
// enable_passwordless_login_method, enable_oidc_webauthn_sequencing, enable_verification.
type features struct {
	localIDP, mfa, verification, recovery, passwordless, sequencing bool
}

func (r *renderer) features() features {
	f := features{
		localIDP:     r.spec.HasFeature(FeatureLocalIDP),
		mfa:          r.spec.HasFeature(FeatureMFA),
		verification: r.spec.HasFeature(FeatureVerification),
		recovery:     r.spec.HasFeature(FeatureRecovery),
		passwordless: r.spec.HasFeature(FeaturePasswordless),
		sequencing:   r.spec.HasFeature(FeatureOIDCWebAuthnSequencing),
	}
	// As in the charm, these act on local (password) accounts only.
	for _, x := range []struct {
		on   bool
		name string
	}{{f.mfa, FeatureMFA}, {f.verification, FeatureVerification}, {f.recovery, FeatureRecovery}} {
		if x.on && !f.localIDP {
			r.warn("feature " + x.name + " has no effect without feature " + FeatureLocalIDP)
		}
	}
	return f
}

// uiURL is the login UI's page for a flow, "" without a login UI.
func (r *renderer) uiURL(page string) string {
	if r.spec.UIURL == "" {
		return ""
	}
	return strings.TrimRight(r.spec.UIURL, "/") + "/ui/" + page
}

// selfservice renders selfservice: the same flows, methods and hooks as the charm's template for
// the same switches. Two deliberate differences: the password method follows local-idp alone
// (the charm also requires a login UI, but an app may drive Kratos's API flows itself), and
// recovery is the `recovery` switch (the charm turns it on with a login UI).
func (r *renderer) selfservice(providers []OIDCProvider) Selfservice {
	f := r.feat
	ui := r.spec.UIURL != ""
	s := Selfservice{
		DefaultBrowserReturnURL: r.returnURL(),
		AllowedReturnURLs:       r.allowedReturnURLs(),
	}

	// Flows. With a login UI, every flow's ui_url is its page there, enabled or not: nothing
	// Kratos redirects a browser to, nor the recovery link its admin API issues, leads elsewhere.
	// Without one, Kratos's defaults stay (as in the charm): its documentation's fallback pages,
	// https://www.ory.sh/kratos/docs/fallback/<flow>; an app without a login UI drives the API
	// flows (/self-service/<flow>/api), which answer JSON and redirect nowhere.
	webauthn := f.passwordless || f.sequencing
	s.Flows.Settings = SettingsFlow{UIURL: r.uiURL("settings"), RequiredAAL: "highest_available"}
	s.Flows.Recovery = RecoveryFlow{UIURL: r.uiURL("recovery")}
	s.Flows.Verification = VerificationFlow{UIURL: r.uiURL("verification")}
	s.Flows.Registration = RegistrationFlow{Enabled: true, UIURL: r.uiURL("registration")}
	if ui {
		s.Flows.Error = &ErrorFlow{UIURL: r.uiURL("error")}
		s.Flows.Login = LoginFlow{UIURL: r.uiURL("login"), Style: "identifier_first"}
		// The charm sends the browser back to account linking / passkey pages of its login UI;
		// ours has one settings page.
		s.Flows.Settings.After = &SettingsAfter{OIDC: &ReturnTo{r.uiURL("settings")}}
		if webauthn {
			s.Flows.Settings.After.WebAuthn = &ReturnTo{r.uiURL("settings")}
		}
	}
	if f.recovery && f.localIDP {
		s.Flows.Recovery.Enabled, s.Flows.Recovery.Use = true, "code"
		s.Flows.Recovery.After = &RecoveryAfter{Hooks: []Hook{{"revoke_active_sessions"}}}
	}
	if f.verification && f.localIDP {
		notify := false
		v := &s.Flows.Verification
		v.Enabled, v.Use, v.Lifespan, v.NotifyUnknownRecipients = true, "code", "1h", &notify
	}
	after := &RegistrationAfter{}
	withVerification := func() *Hooks {
		if s.Flows.Verification.Enabled {
			return &Hooks{Hooks: []Hook{{"show_verification_ui"}, {"session"}}}
		}
		return &Hooks{Hooks: []Hook{{"session"}}}
	}
	if f.localIDP {
		after.Password = withVerification()
	}
	if len(providers) > 0 {
		after.OIDC = &Hooks{Hooks: []Hook{{"session"}}}
	}
	if f.passwordless {
		after.WebAuthn = &Hooks{Hooks: []Hook{{"session"}}}
	}
	if f.localIDP || f.sequencing {
		after.Code = withVerification()
	}
	if *after != (RegistrationAfter{}) {
		s.Flows.Registration.After = after
	}

	// Methods. link and passkey stay off as in the charm (code replaces link; webauthn covers
	// passkeys); code is on exactly when a recovery or verification flow sends codes.
	m := &s.Methods
	m.Profile.Enabled = f.localIDP
	m.Code.Enabled = f.localIDP && (f.recovery || f.verification)
	m.Password = PasswordMethod{Enabled: f.localIDP}
	if f.localIDP && f.mfa {
		m.TOTP = TOTPMethod{Enabled: true, Config: &TOTPConfig{Issuer: r.displayName()}}
	}
	m.LookupSecret.Enabled = f.sequencing || (f.mfa && f.localIDP)
	if webauthn {
		m.WebAuthn = WebAuthnMethod{Enabled: true, Config: &WebAuthnConfig{
			Passwordless: f.passwordless,
			RP:           r.relyingParty(),
		}}
	}
	if len(providers) > 0 {
		m.OIDC = OIDCMethod{Enabled: true, Config: &OIDCConfig{Providers: providers}}
	}
	return s
}

// session renders session: with MFA, whoami demands the highest authenticator level the
// identity has (the charm's SESSION_WHOAMI_REQUIRED_AAL), so a session without its second
// factor does not count as logged in.
func (r *renderer) session() *Session {
	f := r.feat
	if f.sequencing || (f.localIDP && f.mfa) {
		return &Session{Whoami: SessionWhoami{RequiredAAL: "highest_available"}}
	}
	return nil
}

// returnURL is where browsers go after a flow: return-url, else the login UI, else Kratos's own
// public URL (Kratos requires one).
func (r *renderer) returnURL() string {
	switch {
	case r.spec.ReturnURL != "":
		return r.spec.ReturnURL
	case r.spec.UIURL != "":
		return r.spec.UIURL
	}
	return r.spec.PublicURL
}

// allowedReturnURLs is allowed-return-urls, else the login UI and the return URL.
func (r *renderer) allowedReturnURLs() []string {
	if len(r.spec.AllowedReturnURLs) > 0 {
		return r.spec.AllowedReturnURLs
	}
	var out []string
	for _, u := range []string{r.spec.UIURL, r.spec.ReturnURL} {
		if u != "" && (len(out) == 0 || out[0] != u) {
			out = append(out, u)
		}
	}
	return out
}

// relyingParty is the WebAuthn relying party: the browser runs the ceremony on the login UI's
// pages, so its host is the RP id and its origin the allowed one; without a login UI, Kratos's
// public URL.
func (r *renderer) relyingParty() WebAuthnRP {
	base := r.spec.UIURL
	if base == "" {
		base = r.spec.PublicURL
	}
	u, _ := url.Parse(base) // checked by Spec.Validate
	return WebAuthnRP{
		ID:          u.Hostname(),
		DisplayName: r.displayName(),
		Origins:     []string{u.Scheme + "://" + u.Host},
	}
}

// displayName names the service in authenticator apps (TOTP issuer, WebAuthn RP): the mail
// sender's name, the one brand the annotations carry.
func (r *renderer) displayName() string {
	if r.spec.SenderName != "" {
		return r.spec.SenderName
	}
	return "Kratos"
}
