package actions_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	client "github.com/ory/kratos-client-go"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// TestOIDCListAndUnlink imports OIDC links through the admin API (as a migration from another
// IdP would), lists and unlinks them.
func TestOIDCListAndUnlink(t *testing.T) {
	c, _ := adminClient(t)
	mail := email(t, "social")
	body := client.NewCreateIdentityBody("default", map[string]interface{}{"email": mail})
	pw := strongPassword
	body.Credentials = &client.IdentityWithCredentials{
		Password: &client.IdentityWithCredentialsPassword{Config: &client.IdentityWithCredentialsPasswordConfig{Password: &pw}},
		Oidc: &client.IdentityWithCredentialsOidc{Config: &client.IdentityWithCredentialsOidcConfig{
			Providers: []client.IdentityWithCredentialsOidcConfigProvider{
				{Provider: "github", Subject: "12345"},
				{Provider: "generic", Subject: "abc-def"},
			},
		}},
	}
	i, _, err := c.IdentityAPI.CreateIdentity(ctx(t)).CreateIdentityBody(*body).Execute()
	if err != nil {
		t.Fatal(err)
	}

	got, err := actions.ListOIDC(ctx(t), c, actions.Ref{Email: mail})
	if err != nil {
		t.Fatal(err)
	}
	want := []actions.OIDCAccount{
		{Provider: "generic", Subject: "abc-def", Identifier: "generic:abc-def"},
		{Provider: "github", Subject: "12345", Identifier: "github:12345"},
	}
	if got.IdentityID != i.Id || !reflect.DeepEqual(got.Accounts, want) {
		t.Fatalf("ListOIDC = %+v, want %+v", got, want)
	}

	_, err = actions.UnlinkOIDC(ctx(t), c, actions.Ref{ID: i.Id}, "github:99999")
	if !errors.Is(err, actions.ErrNotFound) || !strings.Contains(err.Error(), "github:12345") || !strings.Contains(err.Error(), "generic:abc-def") {
		t.Fatalf("unknown identifier: got %v, want ErrNotFound listing the linked accounts", err)
	}

	res, err := actions.UnlinkOIDC(ctx(t), c, actions.Ref{Email: mail}, "github:12345")
	if err != nil {
		t.Fatal(err)
	}
	if res.IdentityID != i.Id || res.Identifier != "github:12345" {
		t.Fatalf("UnlinkOIDC = %+v", res)
	}
	got, err = actions.ListOIDC(ctx(t), c, actions.Ref{ID: i.Id})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Accounts, want[:1]) {
		t.Fatalf("after unlink: %+v, want only %+v", got.Accounts, want[:1])
	}
	login(t, mail, strongPassword)

	// An identity without links lists none and refuses an unlink clearly.
	plain := email(t, "plain")
	createUser(t, c, plain, "")
	got, err = actions.ListOIDC(ctx(t), c, actions.Ref{Email: plain})
	if err != nil || len(got.Accounts) != 0 {
		t.Fatalf("no links: %+v, %v", got, err)
	}
	if _, err := actions.UnlinkOIDC(ctx(t), c, actions.Ref{Email: plain}, "github:12345"); !errors.Is(err, actions.ErrNotFound) || !strings.Contains(err.Error(), "no linked OIDC account") {
		t.Fatalf("unlink without links: got %v", err)
	}
}

func TestMigrateCommand(t *testing.T) {
	got := actions.MigrateCommand("/etc/kratos/kratos.yaml")
	want := []string{"kratos", "migrate", "sql", "-e", "--yes", "-c", "/etc/kratos/kratos.yaml"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MigrateCommand = %q, want %q", got, want)
	}
}
