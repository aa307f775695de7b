// Package soak runs the library as a service does, against real local
// clusters, under random overlapping faults, and checks its promises the
// whole time (issue 17). It runs only when asked: -soak.duration or
// CLUSTERREGISTRY_SOAK_DURATION; `make soak` sets it.
//
// Five member clusters and a hub: three members are listed from a kubeconfig
// directory, two from Secrets in the hub. Three replicas of a service
// (replica-a, -b and -c; type service) share them through package shard,
// one Lease each in the hub (LeaseDuration 3s, RenewDeadline 2s, RetryPeriod
// 500ms), each reaching the hub through a proxy of its own. Each runs a
// Syncer over its own copy of the merged sources filtered by its Member, a
// Builder gated by it, an HTTP server behind httpcluster, a subscriber and a
// worker per cluster (package fleet). Readers hammer Get, Lease and the HTTP
// servers, each request going to the replica that serves its cluster. The
// injector draws faults from the seed (several at once, each for 2-12s):
// black hole, delay, refusal, API server killed and restarted, token
// rotated with the old one revoked at once, kubeconfig rewritten in place in
// chunks, Secret corrupted and mended, hub down (black hole, refusal or
// kill), a cluster added and removed, and a replica killed (its hub path
// silenced, then abandoned without a clean stop) and started again as a new
// instance of its identity.
//
// The ledger counts every violation with its details: a request fails with
// no fault of its cluster to explain it (see ledger.excused for the grace
// windows, and the bounds at the top of ledger_test.go); a request or build
// of a cluster with no fault takes longer than its bound; no replica serves
// a member for longer than the handoff bound with no fault to explain it; a
// replica starts building a cluster while another replica (or another
// instance of its identity) still holds a client of it, from the start of
// its Build to the end of its Release ("double-owner"); a change reaches the
// Registries late with no fault of its own; events go back in generation or
// disagree with their Registry once caught up; a known credential appears in
// a log line, error, event or HTTP answer; after the replicas stop, a client
// is still held or a Lease is left; goroutines, connections through the
// proxies or the API servers' watches are not back at their baseline.
package soak

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

var (
	flagDuration = flag.Duration("soak.duration", 0, "how long the soak injects faults; 0 skips it (env CLUSTERREGISTRY_SOAK_DURATION)")
	flagSeed     = flag.Uint64("soak.seed", 0, "seed of the fault schedule; 0 picks a fresh one (env CLUSTERREGISTRY_SOAK_SEED)")
	flagReport   = flag.String("soak.report", "", "file to write the report to, besides the test log (env CLUSTERREGISTRY_SOAK_REPORT)")
)

// settings are the soak's flags, each falling back on its environment variable.
type settings struct {
	duration time.Duration
	seed     uint64
	report   string
}

func loadSettings() (settings, error) {
	s := settings{duration: *flagDuration, seed: *flagSeed, report: *flagReport}
	if v := os.Getenv("CLUSTERREGISTRY_SOAK_DURATION"); s.duration == 0 && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return s, fmt.Errorf("CLUSTERREGISTRY_SOAK_DURATION: %w", err)
		}
		s.duration = d
	}
	if v := os.Getenv("CLUSTERREGISTRY_SOAK_SEED"); s.seed == 0 && v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("CLUSTERREGISTRY_SOAK_SEED: %w", err)
		}
		s.seed = n
	}
	if s.report == "" {
		s.report = os.Getenv("CLUSTERREGISTRY_SOAK_REPORT")
	}
	if s.seed == 0 {
		s.seed = uint64(time.Now().UnixNano())
	}
	return s, nil
}

func TestMain(m *testing.M) {
	needed := func() bool {
		s, err := loadSettings()
		return err != nil || s.duration > 0
	}
	os.Exit(localcluster.RunTests(m, needed, leakOptions()...))
}

func leakOptions() []goleak.Option {
	return []goleak.Option{
		// klog's flush daemon starts at init and runs for the whole process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}
}
