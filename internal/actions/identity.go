package actions

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	client "github.com/ory/kratos-client-go"
)

// NewClient returns an admin API client for adminURL (e.g. http://127.0.0.1:4434). hc may be nil
// (http.DefaultClient's behaviour). The client uses a copy of hc whose transport bounds every
// request: to hc.Timeout (the whole exchange, body included; a TimeoutError names the limit) and
// to MaxResponseBytes per answer (a ResponseTooLargeError).
func NewClient(adminURL string, hc *http.Client) (*client.APIClient, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalidf("admin URL %q: want http(s)://host[:port][/path]", adminURL)
	}
	cfg := client.NewConfiguration()
	cfg.Servers = client.ServerConfigurations{{URL: strings.TrimSuffix(u.String(), "/")}}
	c := &http.Client{}
	if hc != nil {
		*c = *hc
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &limitTransport{base: base, timeout: c.Timeout, max: MaxResponseBytes}
	c.Timeout = 0 // the transport's, which says what it was
	cfg.HTTPClient = c
	cfg.UserAgent = "kubectl-kratos"
	return client.NewAPIClient(cfg), nil
}

// Ref addresses one identity: by ID, or by email through the admin API's credentials-identifier
// filter (the login identifiers of password and code credentials).
type Ref struct {
	ID    string
	Email string
}

// Validate checks that exactly one of ID and Email is set and that an ID is a UUID.
func (r Ref) Validate() error {
	switch {
	case r.ID != "" && r.Email != "":
		return invalidf("give an identity ID or --email, not both")
	case r.ID == "" && r.Email == "":
		return invalidf("give an identity ID or --email")
	case r.ID != "":
		if _, err := uuid.Parse(r.ID); err != nil {
			return invalidf("identity ID %q is not a UUID", r.ID)
		}
	case !strings.Contains(r.Email, "@"):
		return invalidf("--email %q is not an email address", r.Email)
	}
	return nil
}

func (r Ref) String() string {
	if r.ID != "" {
		return r.ID
	}
	return "email " + r.Email
}

// findByEmail returns the identities whose login identifier is email: one admin API call, never
// a scan (the filter is exact and case-insensitive).
func findByEmail(ctx context.Context, c *client.APIClient, email string) ([]client.Identity, error) {
	op := fmt.Sprintf("look up identity by email %q", email)
	ids, resp, err := c.IdentityAPI.ListIdentities(ctx).CredentialsIdentifier(email).Execute()
	if err != nil {
		return nil, apiError(op, resp, err)
	}
	if ids == nil {
		return nil, missing(op, resp)
	}
	return ids, nil
}

// resolveEmail returns the one identity with login identifier email, or a NotFoundError or an
// AmbiguousError.
func resolveEmail(ctx context.Context, c *client.APIClient, email string) (*client.Identity, error) {
	ids, err := findByEmail(ctx, c, email)
	if err != nil {
		return nil, err
	}
	switch len(ids) {
	case 0:
		return nil, &NotFoundError{Ref: Ref{Email: email}}
	case 1:
		return &ids[0], nil
	}
	ae := &AmbiguousError{Email: email}
	for _, i := range ids {
		ae.IDs = append(ae.IDs, i.Id)
	}
	return nil, ae
}

// getByID fetches one identity, with the credentials' configs of the types in include.
func getByID(ctx context.Context, c *client.APIClient, id string, include ...string) (*client.Identity, error) {
	req := c.IdentityAPI.GetIdentity(ctx, id)
	if len(include) > 0 {
		req = req.IncludeCredential(include)
	}
	i, resp, err := req.Execute()
	if err != nil {
		err = apiError("get identity "+id, resp, err)
		if statusOf(err) == http.StatusNotFound {
			return nil, &NotFoundError{Ref: Ref{ID: id}, Cause: err}
		}
		return nil, err
	}
	if i == nil {
		return nil, missing("get identity "+id, resp)
	}
	return i, nil
}

// resolveID returns the ID of ref, looking it up when ref is an email.
func resolveID(ctx context.Context, c *client.APIClient, ref Ref) (string, error) {
	if err := ref.Validate(); err != nil {
		return "", err
	}
	if ref.ID != "" {
		return ref.ID, nil
	}
	i, err := resolveEmail(ctx, c, ref.Email)
	if err != nil {
		return "", err
	}
	return i.Id, nil
}

// resolve returns the identity ref designates, so that its existence is proven and its
// credentials' types are known. By email the lookup's answer is used as is (it carries traits,
// both metadata and the credentials' metadata); a GET is made when it is by ID or when the
// configs of the credential types in include are needed.
func resolve(ctx context.Context, c *client.APIClient, ref Ref, include ...string) (*client.Identity, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	if ref.Email != "" {
		i, err := resolveEmail(ctx, c, ref.Email)
		if err != nil || len(include) == 0 {
			return i, err
		}
		return getByID(ctx, c, i.Id, include...)
	}
	return getByID(ctx, c, ref.ID, include...)
}

// GetIdentity returns one identity. By email it is exactly one admin API call (the list answer
// already carries the identity), by ID one GET.
func GetIdentity(ctx context.Context, c *client.APIClient, ref Ref) (*client.Identity, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	if ref.Email != "" {
		return resolveEmail(ctx, c, ref.Email)
	}
	return getByID(ctx, c, ref.ID)
}

// ListOptions bound a listing.
type ListOptions struct {
	// PageSize is the number of identities per API call; 0 lets Kratos choose (250).
	PageSize int64
	// Limit stops after that many identities; 0 lists them all.
	Limit int
}

// ListIdentities lists identities, following the keyset pagination of the Link header's
// rel="next" page token until the last page or the limit.
func ListIdentities(ctx context.Context, c *client.APIClient, opts ListOptions) ([]client.Identity, error) {
	if opts.PageSize < 0 || opts.Limit < 0 {
		return nil, invalidf("page size and limit must not be negative")
	}
	pageSize := opts.PageSize
	if opts.Limit > 0 && (pageSize == 0 || int64(opts.Limit) < pageSize) {
		pageSize = int64(opts.Limit)
	}
	var all []client.Identity
	token := ""
	for page := 1; ; page++ {
		req := c.IdentityAPI.ListIdentities(ctx)
		if pageSize > 0 {
			req = req.PageSize(pageSize)
		}
		if token != "" {
			req = req.PageToken(token)
		}
		ids, resp, err := req.Execute()
		if err != nil {
			return all, apiError(fmt.Sprintf("list identities (page %d)", page), resp, err)
		}
		if ids == nil {
			return all, missing(fmt.Sprintf("list identities (page %d)", page), resp)
		}
		all = append(all, ids...)
		if opts.Limit > 0 && len(all) >= opts.Limit {
			return all[:opts.Limit], nil
		}
		next := nextPageToken(resp.Header.Values("Link"))
		if next == "" || len(ids) == 0 {
			return all, nil
		}
		if next == token {
			return all, fmt.Errorf("list identities (page %d): kratos returned the same page token twice", page)
		}
		token = next
	}
}

// nextPageToken extracts page_token from the rel="next" link of RFC 8288 Link header values:
// `<http://h/admin/identities?page_size=2&page_token=X>; rel="next"`.
func nextPageToken(values []string) string {
	for _, v := range values {
		for rest := v; rest != ""; {
			start := strings.IndexByte(rest, '<')
			if start < 0 {
				break
			}
			end := strings.IndexByte(rest[start:], '>')
			if end < 0 {
				break
			}
			target := rest[start+1 : start+end]
			rest = rest[start+end+1:]
			// The link's parameters run up to the next link (a comma before '<').
			params := rest
			if i := strings.Index(rest, "<"); i >= 0 {
				params = rest[:i]
			}
			if !isNextRel(params) {
				continue
			}
			u, err := url.Parse(target)
			if err != nil {
				continue
			}
			return u.Query().Get("page_token")
		}
	}
	return ""
}

func isNextRel(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(strings.TrimRight(v, ", ")), `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// DeleteIdentity deletes one identity (Kratos revokes its sessions too) and returns its ID. By
// email it refuses unless exactly one identity matches.
func DeleteIdentity(ctx context.Context, c *client.APIClient, ref Ref) (string, error) {
	id, err := resolveID(ctx, c, ref)
	if err != nil {
		return "", err
	}
	resp, err := c.IdentityAPI.DeleteIdentity(ctx, id).Execute()
	if err != nil {
		err = apiError("delete identity "+id, resp, err)
		if statusOf(err) == http.StatusNotFound {
			return "", &NotFoundError{Ref: Ref{ID: id}, Cause: err}
		}
		return "", err
	}
	if err := noContent("delete identity "+id, resp); err != nil {
		return "", err
	}
	return id, nil
}
