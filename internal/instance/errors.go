package instance

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Errors a caller can tell apart with errors.Is.
var (
	// ErrNoInstance: no injected pod matches.
	ErrNoInstance = errors.New("no Kratos instance")
	// ErrSeveralInstances: the namespace has several instances and none was picked.
	ErrSeveralInstances = errors.New("several Kratos instances")
	// ErrNotReady: the instance has no pod fit for the command.
	ErrNotReady = errors.New("no ready pod")
	// ErrForbidden: RBAC denied a call; the message says which permission is missing.
	ErrForbidden = errors.New("forbidden")
	// ErrTimeout: a port-forward was not established in time.
	ErrTimeout = errors.New("timeout")
)

// Error is a failure to reach the instance, of one of the kinds above (errors.Is) with a
// message that says what to do.
type Error struct {
	Kind    error
	Message string
	Cause   error
}

func (e *Error) Error() string        { return e.Message }
func (e *Error) Is(target error) bool { return target == e.Kind }
func (e *Error) Unwrap() error        { return e.Cause }

func errorf(kind error, format string, a ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, a...)}
}

// APIError describes a failed API call on resource in namespace ns ("" for every namespace):
// an RBAC denial becomes an ErrForbidden naming the permission to ask for and the
// `kubectl auth can-i` command that checks it.
func APIError(err error, verb, resource, ns string) error {
	if apierrors.IsForbidden(err) {
		return forbidden(verb, resource, ns, err)
	}
	return fmt.Errorf("%s %s %s: %w", verb, resource, where(ns), err)
}

func forbidden(verb, resource, ns string, err error) error {
	flag := "-n " + ns
	if ns == "" {
		flag = "-A"
	}
	return &Error{Kind: ErrForbidden, Cause: err, Message: fmt.Sprintf(
		"you need %q on %q %s (check with `kubectl auth can-i %s %s %s`); the API server said: %v",
		verb, resource, where(ns), verb, resource, flag, err)}
}

func where(ns string) string {
	if ns == "" {
		return "in every namespace (-A)"
	}
	return "in namespace " + ns
}
