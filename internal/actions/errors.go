// Package actions implements the identity administration actions of the Kratos charm, and the
// migration command, on a kratos-client-go admin client. It knows nothing of Kubernetes: the
// caller hands it a client pointed at an admin API (through a port-forward or a direct URL).
package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	client "github.com/ory/kratos-client-go"
)

// Sentinel errors, matched with errors.Is, so that callers can tell the outcomes apart without
// parsing messages.
var (
	// ErrNotFound: no identity (or no credential) matches what was asked.
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous: several identities match an email; act by ID instead.
	ErrAmbiguous = errors.New("ambiguous")
	// ErrConflict: the identity to create clashes with an existing one.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is refused before any API call.
	ErrInvalid = errors.New("invalid")
)

// InvalidError is input refused before any API call.
type InvalidError struct{ Message string }

func (e *InvalidError) Error() string        { return e.Message }
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, a ...interface{}) error {
	return &InvalidError{Message: fmt.Sprintf(format, a...)}
}

// NotFoundError says which identity could not be found.
type NotFoundError struct {
	Ref Ref
	// Cause is the API error, when the admin API said 404.
	Cause error
}

func (e *NotFoundError) Error() string {
	if e.Ref.Email != "" {
		// The credentials-identifier filter only sees login identifiers (password, code, webauthn):
		// an account that signs in only through an external provider has none for its email.
		return fmt.Sprintf("no identity has the login identifier %q (--email matches password, code and "+
			"webauthn identifiers; use the identity ID for an account that signs in only through OIDC)", e.Ref.Email)
	}
	return fmt.Sprintf("identity %s not found", e.Ref.ID)
}

func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }
func (e *NotFoundError) Unwrap() error        { return e.Cause }

// AmbiguousError lists the identities that match an email.
type AmbiguousError struct {
	Email string
	IDs   []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%d identities have the login identifier %q (%s): pass one identity ID instead of --email",
		len(e.IDs), e.Email, strings.Join(e.IDs, ", "))
}

func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }

// ConflictError says why an identity cannot be created.
type ConflictError struct {
	Message string
	Cause   error
}

func (e *ConflictError) Error() string        { return e.Message }
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
func (e *ConflictError) Unwrap() error        { return e.Cause }

// APIError is an error answer of the Kratos admin API, with the message and reason of its body
// (the generated client's error text is only the HTTP status).
type APIError struct {
	// Op is what was being done, e.g. "get identity 1234".
	Op         string
	StatusCode int
	Status     string
	Message    string
	Reason     string
	// Body is the raw answer, for -v style debugging.
	Body []byte
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: kratos answered %s", e.Op, e.Status)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Reason != "" && e.Reason != e.Message {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	return b.String()
}

// Is maps the HTTP status onto the sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// apiError turns the client's error into an *APIError when the server answered, into a
// TimeoutError or ResponseTooLargeError (without the URL around it) when the transport's limits
// stopped it, and wraps it with op otherwise (connection refused, ...).
func apiError(op string, resp *http.Response, err error) error {
	if err == nil {
		return nil
	}
	if te := transportError(err); te != nil {
		return fmt.Errorf("%s: %w", op, te)
	}
	var oe *client.GenericOpenAPIError
	if resp == nil || !errors.As(err, &oe) {
		return fmt.Errorf("%s: %w", op, err)
	}
	e := &APIError{Op: op, StatusCode: resp.StatusCode, Status: resp.Status, Body: oe.Body()}
	if e.Status == "" {
		e.Status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Reason  string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(oe.Body(), &body) == nil {
		e.Message, e.Reason = body.Error.Message, body.Error.Reason
	} else if s := strings.TrimSpace(string(oe.Body())); s != "" && len(s) < 512 {
		e.Message = s
	}
	return e
}

// statusOf returns the HTTP status of an API error, 0 for any other error.
func statusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}
