package actions

import (
	"context"
	"net/http"

	client "github.com/ory/kratos-client-go"
)

// InvalidateSessionsResult is the outcome of InvalidateSessions.
type InvalidateSessionsResult struct {
	IdentityID string `json:"identity_id"`
	// Revoked is false when the identity had no active session (nothing to do: still a success).
	Revoked bool `json:"revoked"`
}

// InvalidateSessions revokes and deletes every session of an identity. Kratos answers 404 both
// for an unknown identity and for one without sessions, so the identity is fetched first to tell
// the two apart.
func InvalidateSessions(ctx context.Context, c *client.APIClient, ref Ref) (*InvalidateSessionsResult, error) {
	i, err := resolve(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	resp, err := c.IdentityAPI.DeleteIdentitySessions(ctx, i.Id).Execute()
	if err != nil {
		err = apiError("invalidate sessions of identity "+i.Id, resp, err)
		if statusOf(err) == http.StatusNotFound {
			return &InvalidateSessionsResult{IdentityID: i.Id}, nil
		}
		return nil, err
	}
	if err := noContent("invalidate sessions of identity "+i.Id, resp); err != nil {
		return nil, err
	}
	return &InvalidateSessionsResult{IdentityID: i.Id, Revoked: true}, nil
}
