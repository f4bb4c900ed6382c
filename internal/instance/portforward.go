package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/klog/v2"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// Forward is a running port-forward from 127.0.0.1:LocalPort to a port of a pod.
type Forward struct {
	// URL is http://127.0.0.1:LocalPort.
	URL       string
	LocalPort int
	Pod       string
	Namespace string

	cancel context.CancelFunc
	done   chan error
	errs   *errorSink
	once   sync.Once
}

// DefaultForwardTimeout is how long PortForward waits for a port-forward to be established.
const DefaultForwardTimeout = 30 * time.Second

// PortForward forwards a random local port on 127.0.0.1 to remotePort of pod through the API
// server, as `kubectl port-forward` does: WebSocket first, SPDY when the server cannot upgrade
// to WebSocket. It returns once the local port listens, or fails after DefaultForwardTimeout;
// Close stops it.
func PortForward(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, pod *corev1.Pod, remotePort int) (*Forward, error) {
	return PortForwardWithin(ctx, cfg, cs, pod, remotePort, DefaultForwardTimeout)
}

// PortForwardWithin is PortForward giving up on establishing the forward (the API server's
// upgrade, its connection to the node) after timeout (none when it is not positive), with an
// ErrTimeout error; ctx still bounds the forward's whole life.
func PortForwardWithin(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, pod *corev1.Pod, remotePort int,
	timeout time.Duration) (*Forward, error) {
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).
		SubResource("portforward").URL()

	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	tunneling, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	dialer = portforward.NewFallbackDialerForStreaming(tunneling, dialer, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})

	// The forwarder reports per-connection failures (e.g. nothing listens on the pod's port)
	// through its context's logger: collect them, to explain a failed request, instead of letting
	// klog print them.
	sink := &errorSink{}
	fctx, cancel := context.WithCancel(klog.NewContext(ctx, logr.New(sink)))
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesForStreamingWithContext(fctx, dialer, []string{"127.0.0.1"},
		[]string{"0:" + strconv.Itoa(remotePort)}, ready, io.Discard, io.Discard)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	f := &Forward{Pod: pod.Name, Namespace: pod.Namespace, cancel: cancel, done: make(chan error, 1), errs: sink}
	go func() {
		err := fw.ForwardPorts()
		if err != nil && sink.last() == nil {
			// The connection to the API server ended (e.g. the pod went away); a forwarding
			// error that caused it, already recorded, says more.
			sink.Error(err, "port-forward ended")
		}
		f.done <- err
	}()

	var expired <-chan time.Time
	if timeout > 0 {
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		expired = deadline.C
	}
	select {
	case <-ready:
	case err := <-f.done:
		cancel()
		return nil, explainStreamError(err, "pods/portforward", pod)
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod.Name, ctx.Err())
	case <-expired:
		// The dial may still hang in the forwarder's goroutine: cancelling is all that can be
		// done, and nothing waits for it.
		cancel()
		return nil, &Error{Kind: ErrTimeout, Cause: context.DeadlineExceeded, Message: fmt.Sprintf(
			"port-forward to pod %s in namespace %s: not established within %s (neither the API server nor the node's kubelet completed it)",
			pod.Name, pod.Namespace, timeout)}
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		f.Close()
		return nil, fmt.Errorf("port-forward to pod %s: no local port: %w", pod.Name, err)
	}
	f.LocalPort = int(ports[0].Local)
	f.URL = "http://127.0.0.1:" + strconv.Itoa(f.LocalPort)
	return f, nil
}

// Close stops the port-forward and waits for it to end.
func (f *Forward) Close() {
	f.once.Do(func() {
		f.cancel()
		<-f.done //nolint:errcheck // the forward ends because we cancelled it: its error says only that
	})
}

// LastError is the last failure the forwarder reported for a connection (e.g. "connection
// refused" inside the pod), or nil.
func (f *Forward) LastError() error {
	return f.errs.last()
}

// Explain adds to err, a failed request through the forward, what the forwarder saw.
func (f *Forward) Explain(err error) error {
	if err == nil {
		return nil
	}
	if le := f.LastError(); le != nil {
		return fmt.Errorf("%w (port-forward to pod %s: %w)", err, f.Pod, le)
	}
	return err
}

// explainStreamError names the missing permission when RBAC denied the upgrade (a 403 on the
// WebSocket attempt, then on the SPDY one).
func explainStreamError(err error, subresource string, pod *corev1.Pod) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.Contains(strings.ToLower(msg), "forbidden") {
		// Keep the API server's own sentence, without the upgrade plumbing around it.
		if i := strings.Index(msg, pod.Name); i > 0 && strings.Contains(msg[i:], "forbidden") {
			if j := strings.LastIndex(msg[:i], "pods "); j >= 0 {
				msg = msg[j:]
			}
		}
		return forbidden("create", subresource, pod.Namespace, errors.New(msg))
	}
	what := "port-forward to"
	if subresource == "pods/exec" {
		what = "exec in"
	}
	return fmt.Errorf("%s pod %s in namespace %s: %w", what, pod.Name, pod.Namespace, err)
}

// errorSink is a logr sink that keeps the last error logged and drops everything else.
type errorSink struct {
	mu  sync.Mutex
	err error
}

func (s *errorSink) Init(logr.RuntimeInfo)                  {}
func (s *errorSink) Enabled(int) bool                       { return false }
func (s *errorSink) Info(int, string, ...interface{})       {}
func (s *errorSink) WithValues(...interface{}) logr.LogSink { return s }
func (s *errorSink) WithName(string) logr.LogSink           { return s }
func (s *errorSink) Error(err error, msg string, _ ...interface{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		err = errors.New(msg)
	}
	s.err = fmt.Errorf("%s: %w", msg, err)
}

func (s *errorSink) last() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
