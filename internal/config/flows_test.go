package config

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// flowPages are the self-service flows and their login UI pages (the annotation's doc names them).
var flowPages = []string{"login", "registration", "recovery", "verification", "settings", "error"}

// TestEveryFlowFollowsUIURL: with a login UI, each of the six flows has its page there as ui_url,
// whatever the feature switches (a disabled flow too, so that nothing Kratos issues leads
// elsewhere); without one, no flow has a ui_url and Kratos's defaults apply. A real Kratos
// redirecting to these pages is internal/actions' TestLoginUIFlows.
func TestEveryFlowFollowsUIURL(t *testing.T) {
	for _, features := range [][]string{
		nil,
		{FeatureLocalIDP},
		{FeatureLocalIDP, FeatureRecovery},
		{FeatureLocalIDP, FeatureMFA, FeatureVerification, FeatureRecovery, FeaturePasswordless, FeatureOIDCWebAuthnSequencing},
	} {
		for _, ui := range []string{"", "https://login.example.com", "https://example.com/login-ui/"} {
			spec := Spec{
				Database: DatabaseSQLite, DefaultSchema: "default", PublicURL: "https://auth.example.com/", UIURL: ui,
				Features: features, SenderName: "Kratos", SenderAddress: "no-reply@example.com",
				Migrate: MigrateAuto, Courier: CourierOff, Sidecar: SidecarNative,
				Image: "oryd/kratos:v1.3.1", LogLevel: "info", Admin: AdminLocalhost,
			}
			res, err := Render(&spec, RenderOptions{InputDir: t.TempDir(), ConfigDir: "/etc/kratos", DataDir: "/var/lib/kratos"})
			if err != nil {
				t.Fatalf("features %v, ui-url %q: %v", features, ui, err)
			}
			var cfg struct {
				Selfservice struct {
					Flows map[string]struct {
						UIURL *string `json:"ui_url"`
					} `json:"flows"`
				} `json:"selfservice"`
			}
			if err := yaml.Unmarshal(res.Files[ConfigFile], &cfg); err != nil {
				t.Fatal(err)
			}
			base := map[string]string{"https://login.example.com": "https://login.example.com/ui/", "https://example.com/login-ui/": "https://example.com/login-ui/ui/"}[ui]
			for _, page := range flowPages {
				got := cfg.Selfservice.Flows[page].UIURL
				switch {
				case ui == "" && got != nil:
					t.Errorf("features %v, no ui-url: flows.%s.ui_url is %q, want Kratos's default (none rendered)", features, page, *got)
				case ui != "" && (got == nil || *got != base+page):
					t.Errorf("features %v, ui-url %q: flows.%s.ui_url is %v, want %s", features, ui, page, deref(got), base+page)
				}
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}
