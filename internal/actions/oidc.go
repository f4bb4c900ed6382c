package actions

import (
	"context"
	"fmt"
	"sort"
	"strings"

	client "github.com/ory/kratos-client-go"
)

// OIDCAccount is one external account linked to an identity. Its tokens are never returned.
type OIDCAccount struct {
	Provider string `json:"provider"`
	Subject  string `json:"subject"`
	// Identifier is `<provider>:<subject>`, what UnlinkOIDC takes.
	Identifier   string `json:"identifier"`
	Organization string `json:"organization,omitempty"`
}

// OIDCAccounts lists the external accounts linked to one identity.
type OIDCAccounts struct {
	IdentityID string        `json:"identity_id"`
	Accounts   []OIDCAccount `json:"accounts"`
}

// ListOIDC lists the external (OIDC) accounts linked to an identity.
func ListOIDC(ctx context.Context, c *client.APIClient, ref Ref) (*OIDCAccounts, error) {
	i, err := resolve(ctx, c, ref, "oidc")
	if err != nil {
		return nil, err
	}
	return &OIDCAccounts{IdentityID: i.Id, Accounts: oidcAccounts(i)}, nil
}

// oidcAccounts reads credentials.oidc: the providers of its config, and any identifier the config
// does not explain (so that nothing linked is hidden).
func oidcAccounts(i *client.Identity) []OIDCAccount {
	accounts := []OIDCAccount{}
	if i.Credentials == nil {
		return accounts
	}
	cred, ok := (*i.Credentials)["oidc"]
	if !ok {
		return accounts
	}
	seen := map[string]bool{}
	if providers, ok := cred.Config["providers"].([]interface{}); ok {
		for _, p := range providers {
			m, ok := p.(map[string]interface{})
			if !ok {
				continue
			}
			a := OIDCAccount{Provider: str(m["provider"]), Subject: str(m["subject"]), Organization: str(m["organization"])}
			a.Identifier = a.Provider + ":" + a.Subject
			seen[a.Identifier] = true
			accounts = append(accounts, a)
		}
	}
	for _, id := range cred.Identifiers {
		if seen[id] {
			continue
		}
		provider, subject, _ := strings.Cut(id, ":")
		accounts = append(accounts, OIDCAccount{Provider: provider, Subject: subject, Identifier: id})
	}
	sort.SliceStable(accounts, func(a, b int) bool { return accounts[a].Identifier < accounts[b].Identifier })
	return accounts
}

func str(v interface{}) string {
	s, _ := v.(string)
	return s
}

// UnlinkOIDCResult is the outcome of UnlinkOIDC.
type UnlinkOIDCResult struct {
	IdentityID string `json:"identity_id"`
	Identifier string `json:"identifier"`
}

// UnlinkOIDC removes the link between an identity and one external account, named by its
// identifier `<provider>:<subject>` (as `oidc list` shows it). An identifier that is not linked is
// refused with the list of those that are.
func UnlinkOIDC(ctx context.Context, c *client.APIClient, ref Ref, identifier string) (*UnlinkOIDCResult, error) {
	i, err := linkedOIDC(ctx, c, ref, identifier)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("unlink OIDC account %s from identity %s", identifier, i.Id)
	resp, err := c.IdentityAPI.DeleteIdentityCredentials(ctx, i.Id, "oidc").Identifier(identifier).Execute()
	if err != nil {
		return nil, apiError(op, resp, err)
	}
	if err := noContent(op, resp); err != nil {
		return nil, err
	}
	return &UnlinkOIDCResult{IdentityID: i.Id, Identifier: identifier}, nil
}

// linkedOIDC returns the identity of ref when identifier is one of its linked external accounts,
// else an error naming those that are.
func linkedOIDC(ctx context.Context, c *client.APIClient, ref Ref, identifier string) (*client.Identity, error) {
	if identifier == "" {
		return nil, invalidf("a credential identifier (<provider>:<subject>) is required")
	}
	i, err := resolve(ctx, c, ref, "oidc")
	if err != nil {
		return nil, err
	}
	accounts := oidcAccounts(i)
	linked := make([]string, 0, len(accounts))
	found := false
	for _, a := range accounts {
		linked = append(linked, a.Identifier)
		found = found || a.Identifier == identifier
	}
	if !found {
		if len(linked) == 0 {
			return nil, fmt.Errorf("identity %s has no linked OIDC account: %w", i.Id, ErrNotFound)
		}
		return nil, fmt.Errorf("identity %s has no linked OIDC account %q; linked: %s: %w",
			i.Id, identifier, strings.Join(linked, ", "), ErrNotFound)
	}
	return i, nil
}
