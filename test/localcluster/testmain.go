package localcluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// RunTests is the body of the TestMain of a package whose tests run local
// clusters; TestMain passes its result to os.Exit. It parses the flags, and
// unless needed (called after that) says the servers are not needed (a
// package whose tests skip with -short, say), builds or finds them before
// any test runs, outside any test's timeout: a cold build takes about ten
// minutes on two cores, and a run without servers must not pass. Then it
// runs the tests, stops every Environment they left running (StopAll), and
// fails the run if a goroutine is left that leakOptions do not allow.
// needed may be nil: the servers are always needed.
func RunTests(m *testing.M, needed func() bool, leakOptions ...goleak.Option) int {
	flag.Parse() // for needed: testing.Short, for one
	if needed == nil || needed() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
		begin := time.Now()
		bins, err := EnsureBinaries(ctx, os.Stderr)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: the local Kubernetes servers could not be built: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "localcluster: servers ready in %s: %s, %s\n",
			time.Since(begin).Round(time.Millisecond), bins.Etcd, bins.KubeAPIServer)
	}

	code := m.Run()

	// Whatever a failed test left running goes now; then nothing of ours
	// may remain.
	if err := StopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping the local clusters: %v\n", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(leakOptions...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	return code
}
