package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// ExitError is a command that ran in the container and exited non-zero.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return fmt.Sprintf("exited with status %d", e.Code) }
func (e *ExitError) Unwrap() error { return e.Err }

// Exec runs command in container of pod through the API server, as `kubectl exec` does
// (WebSocket, falling back to SPDY), without stdin or a TTY, streaming its output to stdout and
// stderr until it ends or ctx is done. Cancelling ctx ends the stream; whether the process in
// the container stops with it is up to the container runtime.
func Exec(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, pod *corev1.Pod, container string,
	command []string, stdout, stderr io.Writer) error {
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: container,
		Command:   command,
		Stdout:    stdout != nil,
		Stderr:    stderr != nil,
	}, scheme.ParameterCodec).URL()

	spdyExec, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	// WebSocket upgrades are GET requests (RFC 6455 §4.1).
	wsExec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, u.String())
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	executor, err := remotecommand.NewFallbackExecutor(wsExec, spdyExec, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	// On cancellation StreamWithContext returns while its copy goroutines may still write:
	// gate the writers so that nothing reaches the caller's after Exec returns.
	opts := remotecommand.StreamOptions{}
	var gates []*gatedWriter
	if stdout != nil {
		g := &gatedWriter{w: stdout}
		gates, opts.Stdout = append(gates, g), g
	}
	if stderr != nil {
		g := &gatedWriter{w: stderr}
		gates, opts.Stderr = append(gates, g), g
	}
	err = executor.StreamWithContext(ctx, opts)
	for _, g := range gates {
		g.close()
	}
	if err == nil {
		return nil
	}
	var ce utilexec.CodeExitError
	if errors.As(err, &ce) {
		return &ExitError{Code: ce.Code, Err: err}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("exec in pod %s: %w", pod.Name, ctx.Err())
	}
	return explainStreamError(err, "pods/exec", pod)
}

// gatedWriter forwards writes until closed, and drops them after.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
