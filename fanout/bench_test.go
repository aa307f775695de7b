package fanout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fanout"
)

// BenchmarkPage measures one page load: a namespace list on each of 100
// clusters (each with a client and connections of its own, all served by
// local TLS test servers, with no client-side rate limit), with one
// black-holed cluster and, as the
// baseline in the same run, without it. The per-cluster deadline is 500ms,
// so the first page with the dead cluster should cost about that, and not
// the minutes an unbounded client-go request waits; once a probe has found
// it unreachable, its client fails fast and the page should cost about what
// it costs without the dead cluster ("known-down"). The "naive" row is the
// loop a service writes by hand: one goroutine per client of the Snapshot, no
// per-cluster deadline, the page cut by a 30s context. Each of its loads
// waits for the dead cluster for 30s, so it makes naiveLoads loads per run,
// whatever -benchtime says.
func BenchmarkPage(b *testing.B) {
	const clusters, deadline = 100, 500 * time.Millisecond
	live, dead := clusterregistrytest.NewServer(b), clusterregistrytest.NewServer(b)
	source := clusterregistrytest.NewSource(dead.Cluster("dead"))
	for i := range clusters - 1 {
		source.Upsert(live.Cluster(fmt.Sprintf("c%03d", i)))
	}
	list := func(ctx context.Context, _ string, c *clusterregistry.Client) (int, error) {
		ns, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(ns.Items), nil
	}
	page := func(b *testing.B, syncer *clusterregistry.Syncer[*clusterregistry.Client], opts ...fanout.Option) {
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			fanout.Collect(context.Background(), syncer.Registry(), list,
				append(opts, fanout.WithTimeout(deadline), fanout.WithConcurrency(clusters))...)
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(took[len(took)*99/100])/1e6, "p99-ms")
	}
	start := func(b *testing.B, opts ...clusterregistry.Option) *clusterregistry.Syncer[*clusterregistry.Client] {
		hc := clusterregistry.HealthCheck{Interval: time.Hour, Timeout: 200 * time.Millisecond, FailureThreshold: 1}
		syncer := clusterregistrytest.StartSyncer(b, source, clusterregistry.ClientBuilder{SkipVersionCheck: true, QPS: 1e6, Burst: 1e6},
			append(opts, clusterregistry.WithConcurrency(32), clusterregistry.WithHealthCheck(hc))...)
		if err := syncer.Probe(context.Background()); err != nil {
			b.Fatal(err)
		}
		if h, _ := syncer.Registry().Health("dead"); h.State != clusterregistry.HealthUnreachable {
			b.Fatalf("dead cluster is %v after a probe", h.State)
		}
		return syncer
	}
	dead.BlackHole()
	// Without fail-fast every load is a first load: the dead cluster is
	// asked, and costs its deadline, each time.
	slow := start(b, clusterregistry.WithoutFailFast())
	fast := start(b)
	b.Run("first-load", func(b *testing.B) { page(b, slow) })
	b.Run("without-dead", func(b *testing.B) {
		page(b, fast, fanout.WithFilter(func(ci clusterregistry.ClusterInfo) bool { return ci.Name != "dead" }))
	})
	b.Run("known-down", func(b *testing.B) { page(b, fast) })
	var naive []time.Duration
	b.Run("naive", func(b *testing.B) {
		// Each run calls this with b.N=1, then with -benchtime's count
		// (if more): the loads are made in the first call, and the later
		// one reports them again.
		if b.N == 1 || naive == nil {
			naive = naivePage(slow, list)
		}
		b.ReportMetric(float64(naive[len(naive)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(naive[len(naive)*99/100])/1e6, "p99-ms")
	})
}

// naiveLoads is how many loads the naive page makes: each takes 30s.
const naiveLoads = 3

// naivePage loads the naive page naiveLoads times and returns the sorted
// durations. Its syncer must not fail fast: the naive loop has no breaker.
func naivePage(syncer *clusterregistry.Syncer[*clusterregistry.Client],
	list func(context.Context, string, *clusterregistry.Client) (int, error)) []time.Duration {
	var took []time.Duration
	for range naiveLoads {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var wg sync.WaitGroup
		// Without a Lease, as such a loop is written: the source does not
		// change while the benchmark runs, so no client is released under it.
		for name, c := range syncer.Registry().Snapshot().All() {
			wg.Go(func() { _, _ = list(ctx, name, c) })
		}
		wg.Wait()
		cancel()
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took
}
