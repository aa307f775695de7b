package controllerruntime

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/controllerruntime/internal/fakeapi"
)

// fairnessRun is one measurement: a flooded cluster and quiet ones; the
// latency of the quiet clusters' requests, from the change on the server to
// the start of its reconcile.
type fairnessRun struct {
	p50, p99, max time.Duration
	quiet         int
}

// Fairness workload: flood changes this many ConfigMaps of one cluster at
// once; meanwhile each of quiet clusters gets one change every gap.
const (
	flood        = 2000
	quietN       = 4
	quietChanges = 10
	quietGap     = 10 * time.Millisecond
)

// measureFairness runs the workload with the fair queue, or with one shared
// FIFO. Each reconcile reads its object from the API server (no cache), so
// it costs a real round trip.
func measureFairness(tb testing.TB, fifo bool) fairnessRun {
	e := newEnvTB(tb, "flood")
	for i := range quietN {
		e.addServer(fmt.Sprint("quiet-", i))
	}
	e.sync()

	var mu sync.Mutex
	changed := map[Request]time.Time{} // quiet requests waiting for their reconcile
	var latencies []time.Duration
	rec := ReconcileFunc(func(ctx context.Context, r Request) (reconcile.Result, error) {
		start := time.Now()
		mu.Lock()
		if t0, ok := changed[r]; ok {
			latencies = append(latencies, start.Sub(t0))
			delete(changed, r)
		}
		mu.Unlock()
		cl, err := e.reg().Get(r.ClusterName)
		if err != nil {
			return reconcile.Result{}, err
		}
		var cm corev1.ConfigMap
		return reconcile.Result{}, client.IgnoreNotFound(cl.GetAPIReader().Get(ctx, r.NamespacedName, &cm))
	})
	opts := []Option{For(&corev1.ConfigMap{}), WithMaxConcurrentReconciles(2)}
	if fifo {
		opts = append(opts, WithSharedFIFO())
	}
	c, err := NewController("fairness", e.reg(), rec, opts...)
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }() // joined below
	defer func() {
		cancel()
		require.NoError(tb, <-done)
	}()
	require.Eventually(tb, func() bool { return len(c.Engaged()) == quietN+1 }, wait, time.Millisecond)

	for i := range flood {
		e.servers["flood"].Apply(configMap(fmt.Sprint("f-", i), "x"))
	}
	for i := range quietChanges * quietN {
		name := fmt.Sprint("quiet-", i%quietN)
		r := cmReq(name, fmt.Sprint("q-", i))
		mu.Lock()
		changed[r] = time.Now()
		mu.Unlock()
		e.servers[name].Apply(configMap(r.Name, "x"))
		if i%quietN == quietN-1 {
			time.Sleep(quietGap) // the quiet clusters' pace: the workload, not a wait for a result
		}
	}
	if !assert.Eventually(tb, func() bool { mu.Lock(); defer mu.Unlock(); return len(changed) == 0 }, 2*wait, time.Millisecond) {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "controllerruntime.(*") {
				tb.Log(g)
			}
		}
		mu.Lock()
		tb.Fatalf("%d quiet requests never reconciled (%d were): %v", len(changed), len(latencies), changed)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	return fairnessRun{
		p50:   latencies[len(latencies)/2],
		p99:   latencies[len(latencies)*99/100],
		max:   latencies[len(latencies)-1],
		quiet: len(latencies),
	}
}

// TestFairnessAgainstSharedFIFO measures the quiet clusters' request
// latency under a flood, with the fair queue and with one shared FIFO, in
// the same run, and logs the figures. It asserts only the ordering of the
// medians and a generous bound.
func TestFairnessAgainstSharedFIFO(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement; not with -short")
	}
	fair := measureFairness(t, false)
	fifo := measureFairness(t, true)
	t.Logf("quiet clusters' request latency under a flood of %d requests (%d quiet requests, 2 workers):", flood, fair.quiet)
	t.Logf("  fair queue:  p50 %v  p99 %v  max %v", fair.p50, fair.p99, fair.max)
	t.Logf("  shared FIFO: p50 %v  p99 %v  max %v", fifo.p50, fifo.p99, fifo.max)
	assert.Less(t, fair.p50, fifo.p50, "the fair queue serves quiet clusters sooner than a shared FIFO")
	assert.Less(t, fair.p99, 10*time.Second, "a generous bound")
}

func BenchmarkFairness(b *testing.B) {
	for _, tt := range []struct {
		name string
		fifo bool
	}{{"fair", false}, {"sharedFIFO", true}} {
		b.Run(tt.name, func(b *testing.B) {
			var r fairnessRun
			for range b.N {
				r = measureFairness(b, tt.fifo)
			}
			b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
		})
	}
}

// idleClusters is how many engaged idle clusters the memory benchmark runs.
const idleClusters = 100

// BenchmarkIdleClusterMemory measures the heap and goroutines each engaged
// idle cluster costs, with one watched kind (ConfigMaps, 10 objects per
// cluster): through the Syncer, the Builder and a Controller, against a bare
// controller-runtime cluster.Cluster per cluster built by hand with one
// informer and one event handler. The fake API servers run in this process
// in both cases (their goroutines count in both). Run with -benchtime=1x.
func BenchmarkIdleClusterMemory(b *testing.B) {
	for _, tt := range []struct {
		name string
		run  func(b *testing.B, servers []*fakeapi.Server) (stop func())
	}{{"registry", engageWithController}, {"bare", engageBare}} {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				servers := make([]*fakeapi.Server, idleClusters)
				for i := range servers {
					servers[i] = fakeapi.New()
					for j := range 10 {
						servers[i].Apply(configMap(fmt.Sprint("cm-", j), "x"))
					}
				}
				heap0, g0 := settle()
				stop := tt.run(b, servers)
				heap1, g1 := settle()
				b.ReportMetric(float64(heap1-heap0)/idleClusters/1024, "heapKiB/cluster")
				b.ReportMetric(float64(g1-g0)/idleClusters, "goroutines/cluster")
				stop()
				for _, s := range servers {
					s.Close()
				}
			}
		})
	}
}

func settle() (heap uint64, goroutines int) {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

func engageWithController(b *testing.B, servers []*fakeapi.Server) func() {
	source := clusterregistry.NewMemorySource()
	for i, s := range servers {
		source.Upsert(clusterregistry.Cluster{Name: fmt.Sprint("c-", i), Config: s.Config()})
	}
	syncer, err := clusterregistry.NewSyncer(source, Builder{}, clusterregistry.WithInterval(time.Hour))
	require.NoError(b, err)
	_, err = syncer.Sync(context.Background())
	require.NoError(b, err)
	c, err := NewController("idle", syncer.Registry(), ReconcileFunc(func(context.Context, Request) (reconcile.Result, error) {
		return reconcile.Result{}, nil
	}), For(&corev1.ConfigMap{}))
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }() // joined by the returned func
	require.Eventually(b, func() bool { return len(c.Engaged()) == len(servers) }, time.Minute, 10*time.Millisecond)
	waitWatchers(b, servers)
	return func() {
		cancel()
		require.NoError(b, <-done)
		require.NoError(b, syncer.Close())
	}
}

func engageBare(b *testing.B, servers []*fakeapi.Server) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var clusters []cluster.Cluster
	for _, s := range servers {
		cl, err := cluster.New(s.Config())
		require.NoError(b, err)
		clusters = append(clusters, cl)
		wg.Go(func() { _ = cl.Start(ctx) })
		inf, err := cl.GetCache().GetInformer(ctx, &corev1.ConfigMap{}, cache.BlockUntilSynced(false))
		require.NoError(b, err)
		var mu sync.Mutex
		seen := map[types.NamespacedName]struct{}{}
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
			mu.Lock()
			seen[client.ObjectKeyFromObject(obj.(client.Object))] = struct{}{}
			mu.Unlock()
		}})
		require.NoError(b, err)
	}
	waitWatchers(b, servers)
	return func() {
		cancel()
		wg.Wait()
		for _, cl := range clusters {
			closeIdle(cl)
		}
	}
}

func waitWatchers(b *testing.B, servers []*fakeapi.Server) {
	require.Eventually(b, func() bool {
		for _, s := range servers {
			if s.Watchers() == 0 {
				return false
			}
		}
		return true
	}, time.Minute, 10*time.Millisecond)
}

func closeIdle(cl cluster.Cluster) { utilnet.CloseIdleConnectionsFor(cl.GetHTTPClient().Transport) }
