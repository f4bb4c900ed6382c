package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

const someID = "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"

// TestUsageErrors runs invocations that must be refused before any network use, in-process,
// and checks exit status 2 and the message. The kubeconfig points nowhere: a case that got past
// validation would fail differently.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "kubectl kratos"`},
		{[]string{"idnetity"}, "did you mean identity?"},
		{[]string{"identity", "frobnicate"}, `unknown command "frobnicate" for "kubectl kratos identity"`},
		{[]string{"identity", "get"}, "give an identity ID or --email"},
		{[]string{"identity", "get", someID, someID}, "takes one identity ID, got 2 arguments"},
		{[]string{"identity", "get", "ada"}, `identity ID "ada" is not a UUID`},
		{[]string{"identity", "get", someID, "--email", "ada@example.com"}, "not both"},
		{[]string{"identity", "get", "--email", "ada"}, `--email "ada" is not an email address`},
		{[]string{"identity", "get", someID, "-o", "xml"}, `-o "xml": want one of table, wide, json, yaml`},
		{[]string{"identity", "get", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"identity", "list", "--page-size", "-1"}, "--page-size -1"},
		{[]string{"identity", "list", "--page-size", "x"}, `invalid argument "x"`},
		{[]string{"identity", "list", "--limit", "-2"}, "--limit must not be negative"},
		{[]string{"identity", "list", "extra"}, "accepts no arguments"},
		{[]string{"identity", "delete"}, "give an identity ID or --email"},
		{[]string{"identity", "delete", "--email", "ada@example.com", "-o", "wide"}, `want one of table, json, yaml`},
		{[]string{"identity", "create-admin", "--email", "ada@example.com"}, "--username is required"},
		{[]string{"identity", "create-admin", "--username", "ada"}, "--email is required"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada"}, `--email "ada" is not an email address`},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "Ada <ada@example.com>"}, "is not an email address"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "--password", "hunter2"}, "unknown flag: --password"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "--password-stdin", "--password-secret", "pw"}, "not both"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "--password-secret", "Bad_Name"}, `--password-secret "Bad_Name": Secret name`},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "--password-secret", "pw/bad key"}, "key:"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "--expires-in", "0s"}, "--expires-in 0s: must be positive"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "extra"}, "accepts no arguments"},
		{[]string{"identity", "reset-password", someID, "--expires-in", "1500ms"}, "whole seconds only"},
		{[]string{"identity", "reset-password", "--password-stdin"}, "give an identity ID or --email"},
		{[]string{"identity", "invalidate-sessions"}, "give an identity ID or --email"},
		{[]string{"identity", "reset-mfa", someID}, "--type is required: totp, lookup_secret, webauthn"},
		{[]string{"identity", "reset-mfa", someID, "--type", "sms"}, `MFA type "sms": want one of totp, lookup_secret, webauthn`},
		{[]string{"identity", "reset-mfa", "--type", "totp"}, "give an identity ID or --email"},
		{[]string{"identity", "oidc", "list"}, "give an identity ID or --email"},
		{[]string{"identity", "oidc", "unlink", someID}, "--credential-id is required"},
		{[]string{"identity", "oidc", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"migrate", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{[]string{"migrate", "extra"}, "accepts no arguments"},
		{[]string{"migrate", "--admin-url", "http://127.0.0.1:4434"}, "--admin-url does not apply to migrate"},
		{[]string{"identity", "list", "--instance", "not a label!"}, `--instance "not a label!"`},
		{[]string{"identity", "list", "-l", "a in ("}, `-l "a in ("`},
		{[]string{"identity", "list", "--admin-url", "ftp://h"}, `--admin-url "ftp://h": want http(s)://host[:port]`},
		{[]string{"identity", "list", "--admin-url", "http://h", "--instance", "web"}, "does not go with --instance or -l"},
		{[]string{"identity", "list", "--request-timeout", "soon"}, `--request-timeout "soon"`},
		{[]string{"identity", "delete", someID, "--dry-run=maybe"}, `--dry-run "maybe": want "none", "server" or "client"`},
		{[]string{"identity", "delete", someID, "ada"}, `identity ID "ada" is not a UUID`},
		{[]string{"identity", "reset-mfa", someID, "--type", "totp", "--dry-run=sever"}, `--dry-run "sever"`},
		{[]string{"version", "-o", "xml"}, `-o "xml"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := run(t, "", tc.args...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr %q does not say %q", stderr, tc.want)
			}
			if !strings.Contains(stderr, "--help' for usage") {
				t.Fatalf("stderr %q does not point to --help", stderr)
			}
		})
	}
}

// run executes the plugin in-process with a kubeconfig that leads nowhere.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	args = append([]string{"--kubeconfig", "/nonexistent/kubeconfig"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := Main(ctx, args, streams)
	return code, out.String(), errOut.String()
}

func TestValidateAcceptsGoodOptions(t *testing.T) {
	g := &Globals{ConfigFlags: genericclioptions.NewConfigFlags(true), AdminTimeout: DefaultAdminTimeout}
	table := outputFlags{Format: formatTable}
	for name, o := range map[string]interface{ Validate() error }{
		"get by id":        &GetOptions{g: g, Ref: refFlags{ID: someID}, Output: outputFlags{Format: formatWide, wide: true}},
		"get by email":     &GetOptions{g: g, Ref: refFlags{Email: "ada@example.com"}, Output: outputFlags{Format: formatYAML}},
		"list":             &ListOptions{g: g, PageSize: 2, Limit: 5, Output: outputFlags{Format: formatJSON}},
		"delete":           &DeleteOptions{g: g, Emails: []string{"ada@example.com"}, IDs: []string{someID}, Output: table, DryRun: dryRunFlags{value: "server"}},
		"create-admin":     &CreateAdminOptions{g: g, Username: "ada", Email: "ada@example.com", Schema: "admin", ExpiresIn: time.Hour, Password: passwordFlags{Secret: "ada-pw/new"}, Output: table},
		"reset-password":   &ResetPasswordOptions{g: g, Ref: refFlags{ID: someID}, ExpiresIn: 30 * time.Minute, Password: passwordFlags{FromStdin: true}, Output: table},
		"invalidate":       &InvalidateSessionsOptions{g: g, Ref: refFlags{ID: someID}, Output: table},
		"reset-mfa":        &ResetMFAOptions{g: g, Ref: refFlags{ID: someID}, Type: "lookup_secret", Output: table},
		"oidc list":        &OIDCListOptions{g: g, Ref: refFlags{ID: someID}, Output: table},
		"oidc unlink":      &OIDCUnlinkOptions{g: g, Ref: refFlags{ID: someID}, CredentialID: "github:12345", Output: table},
		"migrate":          &MigrateOptions{g: g, Timeout: time.Minute},
		"version":          &VersionOptions{g: g, Output: table},
		"global selection": &ListOptions{g: &Globals{ConfigFlags: genericclioptions.NewConfigFlags(true), AdminTimeout: DefaultAdminTimeout, Instance: "web", Selector: "app in (web,api)"}, Output: table},
		"global admin-url": &ListOptions{g: &Globals{ConfigFlags: genericclioptions.NewConfigFlags(true), AdminTimeout: time.Second, AdminURL: "https://kratos-admin.internal:4434"}, Output: table},
	} {
		if err := o.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

func TestCommandsThatNeedNoCluster(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version"}, "kubectl-kratos dev (Kratos v1.3.1)"},
		{[]string{"version", "-o", "json"}, `"kratosVersion": "v1.3.1"`},
		{[]string{"--help"}, "kubectl kratos [command]"},
		{[]string{"identity"}, "create-admin"},
		{[]string{"completion", "bash"}, "bash completion"},
		{[]string{"identity", "create-admin", "--help"}, "--password-secret"},
		// A client dry run contacts nothing (the kubeconfig does not exist) and reads no password.
		{[]string{"identity", "delete", someID, "--dry-run"}, "identity/" + someID + ": would delete the identity and its sessions (dry run)"},
		{[]string{"identity", "delete", "--email", "ada@example.com", "--dry-run=client"}, `identity with email "ada@example.com": would delete`},
		{[]string{"identity", "delete", someID, "--dry-run=true"}, "(dry run)"},
		{[]string{"identity", "reset-password", someID, "--password-secret", "pw", "--dry-run=client"}, "would set the password (dry run)"},
		{[]string{"identity", "invalidate-sessions", someID, "--dry-run"}, "would revoke and delete every session (dry run)"},
		{[]string{"identity", "reset-mfa", someID, "--type", "totp", "--dry-run"}, "would remove the totp credentials (dry run)"},
		{[]string{"identity", "oidc", "unlink", someID, "--credential-id", "github:1", "--dry-run"}, "would unlink the OIDC account github:1 (dry run)"},
		{[]string{"identity", "create-admin", "--username", "ada", "--email", "ada@example.com", "--dry-run"}, `would create an identity with schema admin, username "ada" and email "ada@example.com"`},
		{[]string{"identity", "delete", someID, "--dry-run", "-o", "json"}, `"dryRun": "client"`},
	} {
		code, stdout, stderr := run(t, "", tc.args...)
		if code != ExitOK || !strings.Contains(stdout, tc.want) {
			t.Errorf("%q: exit %d, stdout %q (stderr %q), want %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

func TestExitCodeOfFailures(t *testing.T) {
	// Past validation, a missing kubeconfig is a failure (1), not a usage error.
	code, _, stderr := run(t, "", "identity", "get", someID)
	if code != ExitFailure || !strings.Contains(stderr, "error: ") {
		t.Fatalf("exit %d, stderr %q; want 1", code, stderr)
	}
}
