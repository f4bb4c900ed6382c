// Command kubectl-kratos is the kubectl plugin: `kubectl kratos ...`. The command tree lives in
// internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kratos-injector/kratos-injector/internal/cli"
)

func main() {
	// Ctrl-C (or SIGTERM) cancels the command's context: it stops, its port-forward ends, and it
	// exits 1 with "error: interrupted". From then on the signals have their default effect
	// again, so a second Ctrl-C kills the plugin at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	code := cli.Main(ctx, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
