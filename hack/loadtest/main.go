// Command loadtest is the admission load harness `make bench` runs: it builds `webhook serve`,
// starts it and two baselines one at a time as separate processes, sends each the same Pod
// CREATE review with vegeta over TLS and HTTP/2 (at maximum throughput, then at a fixed rate)
// and prints one Markdown table. The logic is in hack/loadtest/harness.
//
//	go run ./hack/loadtest [-duration 10s] [-rate 1000] [-workers 32] [-servers bare,allow-all,kratos-injector] [-profile DIR]
//
// With -server bare|allow-all -addr A -cert-dir D as its first arguments it is one of the
// baseline servers instead (the harness starts itself so).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kratos-injector/kratos-injector/hack/loadtest/harness"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-server" || os.Args[1] == "--server") {
		if err := harness.ServeMain(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest server:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run())
}

// run measures, prints the table and returns the exit status: 1 on a failure or on any error
// response, 2 on a usage error.
func run() int {
	var cfg harness.Config
	var servers, review string
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "duration of each phase (maximum throughput, fixed rate) per server")
	flag.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured warm-up at maximum throughput before the phases (0: none)")
	flag.IntVar(&cfg.Rate, "rate", 1000, "reviews per second of the fixed-rate phase")
	flag.IntVar(&cfg.Workers, "workers", 32, "reviews in flight in the maximum-throughput phase")
	flag.StringVar(&servers, "servers", strings.Join(harness.Servers, ","), "comma-separated servers to measure, in order")
	flag.StringVar(&cfg.Webhook, "webhook", "", "webhook binary to measure (default: build ./cmd/webhook)")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "directory receiving a CPU profile of each server per phase (<server>-max.pprof, <server>-fixed.pprof; the profiling itself costs CPU)")
	flag.StringVar(&review, "review", "", "AdmissionReview JSON file to send (default: the embedded hack/loadtest/harness/testdata/pod-create-review.json)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\nMeasures the admission servers under load and prints one Markdown table.\n\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = -1 // in harness.Config zero is the default, negative none
	}
	cfg.Servers = strings.Split(servers, ",")
	if review != "" {
		b, err := os.ReadFile(review)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			return 1
		}
		cfg.Review = b
	}
	cfg.Log = prefixed{}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := harness.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 1
	}
	if err := harness.WriteTable(os.Stdout, rep); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 1
	}
	for _, r := range rep.Rows {
		if r.Errors() > 0 {
			fmt.Fprintf(os.Stderr, "loadtest: %s answered %d requests with errors\n", r.Server, r.Errors())
			return 1
		}
	}
	return 0
}

// prefixed writes progress to stderr, each line stamped.
type prefixed struct{}

func (prefixed) Write(p []byte) (int, error) {
	fmt.Fprintf(os.Stderr, "[loadtest %s] %s", time.Now().Format("15:04:05"), p)
	return len(p), nil
}
