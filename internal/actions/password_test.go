package actions_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	client "github.com/ory/kratos-client-go"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

func TestResetPasswordSetsPasswordAndKeepsTheRest(t *testing.T) {
	c, cnt := adminClient(t)
	mail := email(t, "user")
	old := "Old-Password-Long-1"
	body := client.NewCreateIdentityBody("default", map[string]interface{}{"email": mail})
	body.MetadataPublic = map[string]interface{}{"plan": "gold"}
	body.MetadataAdmin = map[string]interface{}{"ticket": float64(42)}
	body.Credentials = &client.IdentityWithCredentials{Password: &client.IdentityWithCredentialsPassword{
		Config: &client.IdentityWithCredentialsPasswordConfig{Password: &old},
	}}
	created, _, err := c.IdentityAPI.CreateIdentity(ctx(t)).CreateIdentityBody(*body).Execute()
	if err != nil {
		t.Fatal(err)
	}
	login(t, mail, old)

	for _, ref := range []actions.Ref{{ID: created.Id}, {Email: mail}} {
		cnt.reset()
		res, err := actions.ResetPassword(ctx(t), c, actions.PasswordReset{Ref: ref, Password: strongPassword})
		if err != nil {
			t.Fatalf("%v: %v", ref, err)
		}
		if !res.PasswordSet || res.Recovery != nil || res.IdentityID != created.Id {
			t.Fatalf("%v: result %+v", ref, res)
		}
		t.Logf("reset-password by %v: %s", ref, cnt)
	}
	login(t, mail, strongPassword)
	loginRefused(t, mail, old)

	after, _, err := c.IdentityAPI.GetIdentity(ctx(t), created.Id).Execute()
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2]interface{}{
		"traits":          {created.Traits, after.Traits},
		"metadata_public": {created.MetadataPublic, after.MetadataPublic},
		"metadata_admin":  {created.MetadataAdmin, after.MetadataAdmin},
		"schema_id":       {created.SchemaId, after.SchemaId},
		"state":           {*created.State, *after.State},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s changed: %v -> %v", name, pair[0], pair[1])
		}
	}
}

func TestResetPasswordWithoutPasswordReturnsRecovery(t *testing.T) {
	c, _ := adminClient(t)
	mail := email(t, "user")
	i := createUser(t, c, mail, strongPassword)
	before := time.Now()
	res, err := actions.ResetPassword(ctx(t), c, actions.PasswordReset{Ref: actions.Ref{Email: mail}, RecoveryExpiresIn: "30m"})
	if err != nil {
		t.Fatal(err)
	}
	if res.PasswordSet || res.IdentityID != i.Id {
		t.Fatalf("result %+v", res)
	}
	checkRecovery(t, res.Recovery, before, 30*time.Minute)
	login(t, mail, strongPassword) // the old password still works until the owner recovers

	_, err = actions.ResetPassword(ctx(t), c, actions.PasswordReset{Ref: actions.Ref{ID: "9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51"}})
	if !errors.Is(err, actions.ErrNotFound) {
		t.Fatalf("unknown ID: got %v, want ErrNotFound", err)
	}
}
