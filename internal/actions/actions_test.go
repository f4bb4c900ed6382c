package actions_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	client "github.com/ory/kratos-client-go"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
)

// One real Kratos serves every test of the package; it starts on first use, so that tests
// without it (argument checks) do not pay for it.
var (
	kratosOnce sync.Once
	kratosSrv  *kratostest.Server
	kratosErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kratosSrv != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- end of kratos log ---\n%s\n", kratosSrv.LogTail(30))
		}
		kratosSrv.Stop()
	}
	os.Exit(code)
}

// kratos returns the shared server, failing the test when it cannot start (never skipping).
func kratos(t testing.TB) *kratostest.Server {
	t.Helper()
	kratosOnce.Do(func() {
		kratosSrv, kratosErr = kratostest.Start()
		if kratosErr == nil {
			fmt.Fprintf(os.Stderr, "kratos: migrated in %s, ready in %s\n", kratosSrv.MigrateDuration, kratosSrv.StartDuration)
		}
	})
	if kratosErr != nil {
		t.Fatalf("start Kratos: %v", kratosErr)
	}
	return kratosSrv
}

// counter counts the requests that go through the admin client.
type counter struct {
	rt    http.RoundTripper
	n     atomic.Int64
	mu    sync.Mutex
	calls []string
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.mu.Lock()
	c.calls = append(c.calls, r.Method+" "+r.URL.RequestURI())
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func (c *counter) reset() {
	c.n.Store(0)
	c.mu.Lock()
	c.calls = nil
	c.mu.Unlock()
}

func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.calls, "; ")
}

// adminClient is an admin API client on the shared Kratos whose requests are counted.
func adminClient(t testing.TB) (*client.APIClient, *counter) {
	t.Helper()
	srv := kratos(t)
	cnt := &counter{rt: http.DefaultTransport}
	c, err := actions.NewClient(srv.AdminURL, &http.Client{Transport: cnt})
	if err != nil {
		t.Fatal(err)
	}
	return c, cnt
}

func ctx(t testing.TB) context.Context {
	c, cancel := kratostest.Context()
	t.Cleanup(cancel)
	return c
}

var uniq atomic.Int64

// email returns an address no other test uses.
func email(t testing.TB, prefix string) string {
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	return fmt.Sprintf("%s-%s-%d@example.test", prefix, name, uniq.Add(1))
}

const strongPassword = "Correct-Horse-Battery-9"

// createUser makes a default-schema identity, with a password when pw is not empty.
func createUser(t testing.TB, c *client.APIClient, mail, pw string) *client.Identity {
	t.Helper()
	body := client.NewCreateIdentityBody("default", map[string]interface{}{"email": mail})
	if pw != "" {
		body.Credentials = &client.IdentityWithCredentials{Password: &client.IdentityWithCredentialsPassword{
			Config: &client.IdentityWithCredentialsPasswordConfig{Password: &pw},
		}}
	}
	i, _, err := c.IdentityAPI.CreateIdentity(ctx(t)).CreateIdentityBody(*body).Execute()
	if err != nil {
		t.Fatalf("create identity %s: %v", mail, err)
	}
	return i
}

// login logs in through the self-service API and returns the session token.
func login(t testing.TB, identifier, pw string) string {
	t.Helper()
	tok, err := kratos(t).LoginPassword(ctx(t), identifier, pw)
	if err != nil {
		t.Fatalf("login as %s: %v", identifier, err)
	}
	return tok
}

// loginRefused checks that the password does not log in.
func loginRefused(t testing.TB, identifier, pw string) {
	t.Helper()
	_, err := kratos(t).LoginPassword(ctx(t), identifier, pw)
	if he, ok := errors.AsType[*kratostest.HTTPError](err); !ok || he.Status != http.StatusBadRequest {
		t.Fatalf("login as %s with a wrong password: want a 400 refusal, got %v", identifier, err)
	}
}

func credentialTypes(t testing.TB, c *client.APIClient, id string) []string {
	t.Helper()
	i, _, err := c.IdentityAPI.GetIdentity(ctx(t), id).Execute()
	if err != nil {
		t.Fatalf("get identity %s: %v", id, err)
	}
	var types []string
	if i.Credentials != nil {
		for k := range *i.Credentials {
			types = append(types, k)
		}
	}
	return types
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
