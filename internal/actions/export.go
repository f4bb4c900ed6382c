package actions

import (
	"context"
	"fmt"

	client "github.com/ory/kratos-client-go"
)

// Export and import move identities between Kratos instances (ory/kratos#2682) through the
// admin API only: the list endpoint with include_credential gives each identity with the
// configs of its password and OIDC credentials, and the batch endpoint (PATCH
// /admin/identities) creates identities with an already-hashed password
// (credentials.password.config.hashed_password: bcrypt, argon2, pbkdf2, scrypt, ... as Kratos
// reads them), so that users sign in with their old password on the new instance.
//
// What the admin API cannot import is not exported: OIDC tokens (only each linked account's
// provider and subject are kept; the tokens stay behind, the users' next sign-in refreshes
// them), and second factors (TOTP, WebAuthn, lookup secrets: their owners enrol again).

// ExportedCredentialTypes are the credential types whose configs an export includes.
var ExportedCredentialTypes = []string{"password", "oidc"}

// ExportOptions select what ExportIdentities exports.
type ExportOptions struct {
	// IDs and Emails restrict the export to these identities (by ID, and by login identifier);
	// both empty: every identity.
	IDs    []string
	Emails []string
	// PageSize is the number of identities per admin API call (0: 250).
	PageSize int64
}

// idsPerCall bounds the ids filter of one list call, so that the URL stays short.
const idsPerCall = 100

// ExportIdentities calls emit for every identity selected, page by page in Kratos's order,
// with its password hash and its OIDC accounts (without their tokens): at most one page is in
// memory at a time. It stops at emit's first error.
func ExportIdentities(ctx context.Context, c *client.APIClient, opts ExportOptions, emit func(*client.Identity) error) error {
	if opts.PageSize < 0 || opts.PageSize > 1000 {
		return invalidf("page size %d: want 1 to 1000", opts.PageSize)
	}
	pageSize := opts.PageSize
	if pageSize == 0 {
		pageSize = 250
	}
	send := func(ids []client.Identity) error {
		for i := range ids {
			exportable(&ids[i])
			if err := emit(&ids[i]); err != nil {
				return err
			}
		}
		return nil
	}
	list := func(op string, filter func(client.IdentityAPIListIdentitiesRequest) client.IdentityAPIListIdentitiesRequest) error {
		token := ""
		for page := 1; ; page++ {
			req := filter(c.IdentityAPI.ListIdentities(ctx).PageSize(pageSize).IncludeCredential(ExportedCredentialTypes))
			if token != "" {
				req = req.PageToken(token)
			}
			ids, resp, err := req.Execute()
			if err != nil {
				return apiError(fmt.Sprintf("%s (page %d)", op, page), resp, err)
			}
			if ids == nil {
				return missing(fmt.Sprintf("%s (page %d)", op, page), resp)
			}
			if err := send(ids); err != nil {
				return err
			}
			next := nextPageToken(resp.Header.Values("Link"))
			if next == "" || len(ids) == 0 {
				return nil
			}
			if next == token {
				return fmt.Errorf("%s (page %d): kratos returned the same page token twice", op, page)
			}
			token = next
		}
	}

	if len(opts.IDs) == 0 && len(opts.Emails) == 0 {
		return list("export identities", func(r client.IdentityAPIListIdentitiesRequest) client.IdentityAPIListIdentitiesRequest { return r })
	}
	for start := 0; start < len(opts.IDs); start += idsPerCall {
		chunk := opts.IDs[start:min(start+idsPerCall, len(opts.IDs))]
		for _, id := range chunk {
			if err := (Ref{ID: id}).Validate(); err != nil {
				return err
			}
		}
		if err := list("export identities by ID", func(r client.IdentityAPIListIdentitiesRequest) client.IdentityAPIListIdentitiesRequest {
			return r.Ids(chunk)
		}); err != nil {
			return err
		}
	}
	for _, e := range opts.Emails {
		if err := list(fmt.Sprintf("export identities with login identifier %q", e), func(r client.IdentityAPIListIdentitiesRequest) client.IdentityAPIListIdentitiesRequest {
			return r.CredentialsIdentifier(e)
		}); err != nil {
			return err
		}
	}
	return nil
}

// exportable keeps of an identity's credentials what an import can use: the password's config
// (its hash), the OIDC accounts' providers and subjects (never their tokens), and no config
// for the other types (Kratos did not include them anyway).
func exportable(i *client.Identity) {
	if i.Credentials == nil {
		return
	}
	for t, cred := range *i.Credentials {
		switch t {
		case "password":
			cfg := map[string]interface{}{}
			for _, k := range []string{"hashed_password", "use_password_migration_hook"} {
				if v, ok := cred.Config[k]; ok {
					cfg[k] = v
				}
			}
			cred.Config = cfg
		case "oidc":
			var providers []interface{}
			if ps, ok := cred.Config["providers"].([]interface{}); ok {
				for _, p := range ps {
					m, ok := p.(map[string]interface{})
					if !ok {
						continue
					}
					kept := map[string]interface{}{}
					for _, k := range []string{"provider", "subject", "organization", "use_auto_link"} {
						if v, ok := m[k]; ok && v != nil && v != "" {
							kept[k] = v
						}
					}
					providers = append(providers, kept)
				}
			}
			cred.Config = map[string]interface{}{"providers": providers}
		default:
			cred.Config = nil
		}
		(*i.Credentials)[t] = cred
	}
}
