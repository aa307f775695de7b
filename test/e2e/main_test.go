// Package e2e tests the clusterregistry library against real, local
// Kubernetes API servers started by package localcluster.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	// Build (or find) the servers before any test runs, and fail the whole
	// package if that is impossible: a run without them must not pass.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	begin := time.Now()
	bins, err := localcluster.EnsureBinaries(ctx, os.Stderr)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the local Kubernetes servers could not be built: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: servers ready in %s: %s, %s\n", time.Since(begin).Round(time.Millisecond), bins.Etcd, bins.KubeAPIServer)

	code := m.Run()

	// Whatever a failed test left running goes now; then nothing of ours
	// may remain.
	if err := localcluster.StopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping the local clusters: %v\n", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(leakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func leakOptions() []goleak.Option {
	return []goleak.Option{
		// klog's flush daemon starts at init and runs for the whole process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}
}
