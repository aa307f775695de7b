// Command demo shows clusterregistry at work on a machine with nothing
// installed but Go: it starts three local Kubernetes API servers, serves the
// dashboard against them, and then adds a cluster, rotates a token, cuts a
// cluster off and removes one, narrating what the registry shows after each
// step. It keeps serving until Ctrl-C, then stops every server it started.
//
//	cd examples && go run ./demo
//
// The first run builds etcd and kube-apiserver from source (about 10
// minutes on 2 cores, with progress); later runs reuse them from
// ~/.cache/clusterregistry/bin and start in seconds.
//
// Flags:
//
//	-addr 127.0.0.1:8080   where the dashboard listens (127.0.0.1:0 for any free port)
//	-pause 4s              time between steps, to watch the dashboard change
//	-exit-after-steps      exit 0 after the last step instead of serving until Ctrl-C (for CI)
//	-v                     also print the Syncer's log
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var opts options
	flag.StringVar(&opts.addr, "addr", "127.0.0.1:8080", "address of the dashboard; 127.0.0.1:0 picks a free port")
	flag.DurationVar(&opts.pause, "pause", 4*time.Second, "time between the steps")
	flag.BoolVar(&opts.exitAfterSteps, "exit-after-steps", false, "exit after the last step instead of serving until Ctrl-C")
	flag.BoolVar(&opts.verbose, "v", false, "print the Syncer's log too")
	flag.Parse()
	opts.out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
