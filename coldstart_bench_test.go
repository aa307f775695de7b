package clusterregistry_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

// BenchmarkColdStart starts a Syncer over n clusters of one local TLS API
// server and runs one Sync from empty: the start of a service, or a storm of
// rotations, with the version check and without it (SkipVersionCheck).
// Beside them, the baseline client-go: what the builds cost without the
// library and what its builds did before they checked over HTTP/1.1: one
// transport of the cluster's own (rest.HTTPClientFor, kept out of client-go's
// shared cache as ClientBuilder does) and one GET /version per cluster, as
// many at once as the Syncer builds (DefaultConcurrency), each transport's
// connections closed after its check.
//
// Each run reports its time, clusters/s, the requests the server saw, the
// growth of the heap and of the RSS at their peak over the start of the run
// (after returning what it can to the OS), and the heap
// still live after two GCs right after the sync, per cluster (what a fresh
// start costs until transient garbage ages out). Run it with -benchtime=1x.
func BenchmarkColdStart(b *testing.B) {
	impls := []struct {
		name string
		run  func(b *testing.B, srv *clusterregistrytest.Server, n int) (release func())
	}{
		{"ours", func(b *testing.B, srv *clusterregistrytest.Server, n int) func() {
			return coldSync(b, srv, n, clusterregistry.ClientBuilder{})
		}},
		{"ours-skipversion", func(b *testing.B, srv *clusterregistrytest.Server, n int) func() {
			return coldSync(b, srv, n, clusterregistry.ClientBuilder{SkipVersionCheck: true})
		}},
		{"client-go", coldClientGo},
	}
	for _, n := range []int{1_000, 10_000} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("impl=%s/clusters=%d", impl.name, n), func(b *testing.B) {
				srv := clusterregistrytest.NewServer(b)
				for b.Loop() {
					reportColdStart(b, srv, n, impl.run)
				}
			})
		}
	}
}

func reportColdStart(b *testing.B, srv *clusterregistrytest.Server, n int,
	run func(*testing.B, *clusterregistrytest.Server, int) func()) {
	debug.FreeOSMemory()
	heapBefore := heapInUse()
	rssBefore := residentBytes()
	requests := srv.Requests()
	peak := startPeakSampler()
	start := time.Now()
	release := run(b, srv, n)
	elapsed := time.Since(start)
	peakHeap, peakRSS := peak()
	heapAfter := heapInUse()
	release()

	b.ReportMetric(elapsed.Seconds(), "seconds")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "clusters/s")
	b.ReportMetric(float64(srv.Requests()-requests), "requests")
	b.ReportMetric(float64(peakHeap-min(peakHeap, heapBefore))/(1<<20), "peak-heap-MB")
	b.ReportMetric(max(peakRSS-rssBefore, 0)/(1<<20), "peak-RSS-MB")
	b.ReportMetric((float64(heapAfter)-float64(heapBefore))/float64(n)/1024, "heap-after-GC-KB/cluster")
}

// coldSync runs one Sync of n clusters from empty; the returned func closes
// the Syncer.
func coldSync(b *testing.B, srv *clusterregistrytest.Server, n int, builder clusterregistry.ClientBuilder) func() {
	src := clusterregistry.NewMemorySource()
	clusters := make([]clusterregistry.Cluster, n)
	for i := range clusters {
		clusters[i] = srv.Cluster(benchName(i, n))
	}
	src.Set(clusters...)
	s, err := clusterregistry.NewSyncer[*clusterregistry.Client](clusterregistry.SourceFunc(src.List), builder,
		clusterregistry.WithLogger(logr.Discard()))
	if err != nil {
		b.Fatal(err)
	}
	rep, err := s.Sync(context.Background())
	if err != nil || len(rep.Added) != n {
		b.Fatalf("sync: %v, %d added, failed: %v", err, len(rep.Added), rep.Failed)
	}
	return func() {
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// coldClientGo is the baseline: a check of each cluster with client-go alone,
// coldConcurrency (the Syncer's default concurrency) at once, keeping the versions.
func coldClientGo(b *testing.B, srv *clusterregistrytest.Server, n int) func() {
	versions := make([]string, n)
	next := make(chan int)
	var wg sync.WaitGroup
	// Workers that end when next is closed, below.
	for range coldConcurrency {
		wg.Go(func() {
			for i := range next {
				cfg := srv.Config()
				cfg.Proxy = http.ProxyFromEnvironment // a transport of its own
				hc, err := rest.HTTPClientFor(cfg)
				if err != nil {
					b.Error(err)
					continue
				}
				dc, err := discovery.NewDiscoveryClientForConfigAndClient(srv.Config(), hc)
				if err != nil {
					b.Error(err)
					continue
				}
				v, err := dc.ServerVersion()
				utilnet.CloseIdleConnectionsFor(hc.Transport)
				if err != nil {
					b.Error(err)
					continue
				}
				versions[i] = v.GitVersion
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return func() { runtime.KeepAlive(versions) }
}

// startPeakSampler samples the live heap and the RSS every few milliseconds
// until the returned func is called, which returns their peaks.
func startPeakSampler() (stop func() (heap uint64, rss float64)) {
	done := make(chan struct{})
	var heap uint64
	var rss float64
	var wg sync.WaitGroup
	// Sampling on its own goroutine, joined by stop.
	wg.Go(func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			heap = max(heap, sample[0].Value.Uint64())
			rss = max(rss, residentBytes())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() (uint64, float64) {
		close(done)
		wg.Wait()
		return heap, rss
	}
}

// residentBytes reads the process's resident set from /proc (Linux); 0
// elsewhere.
func residentBytes() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseFloat(fields[1], 64)
	if err != nil {
		return 0
	}
	return pages * float64(os.Getpagesize())
}

// coldConcurrency is the Syncer's default build concurrency, which the
// baseline uses too.
const coldConcurrency = 8
