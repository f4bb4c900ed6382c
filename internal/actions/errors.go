// Package actions implements the identity administration actions of the Kratos charm, and the
// migration command, on a kratos-client-go admin client. It knows nothing of Kubernetes: the
// caller hands it a client pointed at an admin API (through a port-forward or a direct URL).
package actions

import (
	"bytes"
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
	// Message and Reason are the first lines of those of Kratos's JSON error; for an answer
	// that is not JSON (a proxy's error page), Message is its title or first line of text.
	Message string
	Reason  string
	// ContentType is the media type of an error answer that is not JSON ("" for JSON).
	ContentType string
	// Body is the raw answer, for -v style debugging; never printed whole.
	Body []byte
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: the Kratos admin API answered %s", e.Op, e.Status)
	if e.ContentType != "" {
		fmt.Fprintf(&b, " with %s, not a Kratos error", e.ContentType)
	}
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

// apiError turns the client's error into an *APIError when the server answered with an error
// status, into a MalformedError when it answered success with something the client could not
// decode, into a TimeoutError, ResponseTooLargeError or MalformedError (without the URL around
// it) when the transport stopped it, and wraps it with op otherwise (connection refused, ...).
// What it quotes of an answer is one line.
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
	if resp.StatusCode < 300 {
		return fmt.Errorf("%s: %w", op, undecodable(oe.Body(), oe.Error()))
	}
	e := &APIError{Op: op, StatusCode: resp.StatusCode, Status: status(resp), Body: oe.Body()}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Reason  string `json:"reason"`
		} `json:"error"`
	}
	mt := mediaType(resp.Header.Get("Content-Type"))
	switch {
	case len(bytes.TrimSpace(oe.Body())) == 0:
	case isJSON(mt) && json.Unmarshal(oe.Body(), &body) == nil:
		e.Message, e.Reason = firstLine(body.Error.Message, maxQuoted), firstLine(body.Error.Reason, maxQuoted)
	default:
		e.ContentType = mt
		if mt == "" {
			e.ContentType = "no Content-Type"
		} else if isJSON(mt) {
			e.ContentType = "malformed " + mt
		}
		e.Message = summary(mt, oe.Body())
		if e.Message == e.Status || e.Message == http.StatusText(e.StatusCode) {
			e.Message = ""
		}
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
