package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// MaxResponseBytes is the most the client reads of one admin API answer. Kratos's largest
// answers are pages of identities (at most 1000 per page, each a few KiB with its credentials),
// far below it; what is larger is not a Kratos answer, and reading it whole would take the
// plugin's memory with it (the generated client reads a body whole before decoding it).
const MaxResponseBytes int64 = 16 << 20

// Transport errors, matched with errors.Is.
var (
	// ErrTimeout: the admin API did not answer, body included, within the client's time limit.
	ErrTimeout = errors.New("admin API timeout")
	// ErrResponseTooLarge: an answer was larger than MaxResponseBytes; none of it was used.
	ErrResponseTooLarge = errors.New("admin API response too large")
)

// TimeoutError is a request to the admin API that did not complete within Limit (0: within
// another limit, e.g. the caller's deadline, which Cause is then).
type TimeoutError struct {
	Limit time.Duration
	Cause error
}

func (e *TimeoutError) Error() string {
	if e.Limit > 0 {
		return fmt.Sprintf("the Kratos admin API did not answer within %s", e.Limit)
	}
	return "the Kratos admin API did not answer in time"
}

func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }
func (e *TimeoutError) Unwrap() error        { return e.Cause }

// ResponseTooLargeError is an answer of the admin API larger than Limit bytes.
type ResponseTooLargeError struct{ Limit int64 }

func (e *ResponseTooLargeError) Error() string {
	return fmt.Sprintf("the Kratos admin API's response is larger than %d MiB (the plugin's limit): refused", e.Limit>>20)
}

func (e *ResponseTooLargeError) Is(target error) bool { return target == ErrResponseTooLarge }

// limitTransport bounds each request to the admin API in time (the whole exchange: connection,
// answer and body) and in size (MaxResponseBytes), and fails with a TimeoutError or a
// ResponseTooLargeError that say so. It takes over the http.Client's Timeout, which fails with
// the request's URL and no word of the limit. It also refuses a success answer with a body that
// is not JSON, with a MalformedError.
type limitTransport struct {
	base    http.RoundTripper
	timeout time.Duration // 0: none
	max     int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := req.Context(), context.CancelFunc(func() {})
	if t.timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, t.timeout, &TimeoutError{Limit: t.timeout})
	}
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		err = ourTimeout(ctx, err)
		cancel()
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		cancel()
		return nil, &ResponseTooLargeError{Limit: t.max}
	}
	// Kratos answers success in JSON (or 204 with no body). The generated client would decode
	// XML as XML, and quote any other body whole in its error.
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && resp.StatusCode != http.StatusNoContent && resp.ContentLength != 0 &&
		!isJSON(mediaType(resp.Header.Get("Content-Type"))) {
		resp.Body.Close()
		cancel()
		return nil, notJSON(resp.Header.Get("Content-Type"))
	}
	resp.Body = &limitBody{rc: resp.Body, ctx: ctx, cancel: cancel, left: t.max, limit: t.max}
	return resp, nil
}

// ourTimeout is err, or the TimeoutError when the transport's own deadline caused it.
func ourTimeout(ctx context.Context, err error) error {
	if te, ok := errors.AsType[*TimeoutError](context.Cause(ctx)); ok && ctx.Err() != nil {
		return te
	}
	return err
}

// limitBody reads at most limit bytes of a body: reading more fails with a
// ResponseTooLargeError (as http.MaxBytesReader does for servers).
type limitBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
	left   int64
	limit  int64
	err    error
}

func (b *limitBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// One byte more than allowed tells "exactly the limit" from "more".
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n, b.left = int(b.left), 0
		b.err = &ResponseTooLargeError{Limit: b.limit}
		return n, b.err
	}
	b.left -= int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		err = ourTimeout(b.ctx, err)
		b.err = err
	}
	return n, err
}

func (b *limitBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// transportError is the TimeoutError, ResponseTooLargeError or MalformedError behind err,
// without the URL the HTTP client wraps around it (the operation names what was asked); nil for
// other errors. A timeout of the caller's own deadline is a TimeoutError too, of an unknown limit.
func transportError(err error) error {
	if e, ok := errors.AsType[*ResponseTooLargeError](err); ok {
		return e
	}
	if e, ok := errors.AsType[*MalformedError](err); ok {
		return e
	}
	if e, ok := errors.AsType[*TimeoutError](err); ok {
		return e
	}
	if ne, ok := errors.AsType[net.Error](err); errors.Is(err, context.DeadlineExceeded) || (ok && ne.Timeout()) {
		return &TimeoutError{Cause: err}
	}
	return nil
}
