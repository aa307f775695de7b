package clusterregistry_test

// Benchmarks of the Registry and the Syncer against three baselines written
// for comparison, in the same run:
//
//	A: a plain map behind a sync.Mutex; the sync holds the lock while it
//	   builds (the stall).
//	B: the four-phase design with copying snapshots and sequential builds
//	   without timeouts (the straightforward fix of the data race).
//	L: the floor: a lone atomic.Pointer load of an immutable map.
//
// and, for lookups, R: the floor that DESIGN.md allows, an immutable map
// whose pointer a bare sync.RWMutex guards. Ours against R is what the
// Registry adds; R against L is what the read lock itself costs.
//
// `make bench` runs them with -count for benchstat and prints the ratios
// README's Performance section shows.

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

var benchSizes = []int{10, 1_000, 10_000}

// benchClient is the client of the benchmarks: small, like a handle.
type benchClient struct{ name, token string }

// sleepBuilder builds benchClients, each taking d, except the initial ones
// (token "t0"), so that setting up thousands of clusters is quick. A host
// "blackhole" takes until its context ends or blackHoleCap passes (an
// OS-level timeout: B has no deadline of its own).
type sleepBuilder struct{ d time.Duration }

const blackHoleCap = 10 * time.Second

func (b sleepBuilder) Build(ctx context.Context, c clusterregistry.Cluster) (*benchClient, error) {
	wait := b.d
	if c.Config.BearerToken == "t0" {
		wait = 0
	}
	if c.Config.Host == "blackhole" {
		wait = blackHoleCap
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.Config.Host == "blackhole" {
		return nil, fmt.Errorf("no answer")
	}
	return &benchClient{name: c.Name, token: c.Config.BearerToken}, nil
}

func (sleepBuilder) Release(*benchClient) {}

func benchClusters(n int, token string) []clusterregistry.Cluster {
	cs := make([]clusterregistry.Cluster, n)
	for i := range cs {
		cs[i] = clusterregistry.Cluster{Name: fmt.Sprintf("cluster-%05d", i),
			Config: &rest.Config{Host: "https://10.0.0.1:6443", BearerToken: token}}
	}
	return cs
}

func benchName(i, n int) string { return fmt.Sprintf("cluster-%05d", i%n) }

// --- Baselines ---------------------------------------------------------

// registryA is baseline A: one mutex, held while building.
type registryA struct {
	mu sync.Mutex
	m  map[string]*benchClient
}

func (r *registryA) get(name string) (*benchClient, bool) {
	r.mu.Lock()
	c, ok := r.m[name]
	r.mu.Unlock()
	return c, ok
}

// sync rebuilds the named clusters under the lock.
func (r *registryA) sync(b sleepBuilder, changed []clusterregistry.Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range changed {
		cl, err := b.Build(context.Background(), c)
		if err == nil {
			r.m[c.Name] = cl
		}
	}
}

// registryB is baseline B: four phases, but snapshots copy and builds run one
// after another with no deadline.
type registryB struct {
	mu sync.RWMutex
	m  map[string]*benchClient
}

func (r *registryB) get(name string) (*benchClient, bool) {
	r.mu.RLock()
	c, ok := r.m[name]
	r.mu.RUnlock()
	return c, ok
}

func (r *registryB) snapshot() map[string]*benchClient {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return maps.Clone(r.m)
}

func (r *registryB) sync(b sleepBuilder, changed []clusterregistry.Cluster) {
	next := r.snapshot()
	for _, c := range changed {
		cl, err := b.Build(context.Background(), c)
		if err == nil {
			next[c.Name] = cl
		}
	}
	r.mu.Lock()
	r.m = next
	r.mu.Unlock()
}

// registryL is baseline L: the floor.
type registryL struct {
	p atomic.Pointer[map[string]*benchClient]
}

func (r *registryL) get(name string) (*benchClient, bool) {
	c, ok := (*r.p.Load())[name]
	return c, ok
}

func (r *registryL) swap(changed []clusterregistry.Cluster) {
	next := maps.Clone(*r.p.Load())
	for _, c := range changed {
		next[c.Name] = &benchClient{name: c.Name, token: c.Config.BearerToken}
	}
	r.p.Store(&next)
}

// registryR is baseline R: the read lock the design asks for, and nothing
// else.
type registryR struct {
	mu sync.RWMutex
	m  *map[string]*benchClient
}

func (r *registryR) get(name string) (*benchClient, bool) {
	r.mu.RLock()
	m := r.m
	r.mu.RUnlock()
	c, ok := (*m)[name]
	return c, ok
}

func (r *registryR) swap(changed []clusterregistry.Cluster) {
	r.mu.RLock()
	next := maps.Clone(*r.m)
	r.mu.RUnlock()
	for _, c := range changed {
		next[c.Name] = &benchClient{name: c.Name, token: c.Config.BearerToken}
	}
	r.mu.Lock()
	r.m = &next
	r.mu.Unlock()
}

func newBaselineMap(n int) map[string]*benchClient {
	m := make(map[string]*benchClient, n)
	for i := range n {
		name := benchName(i, n)
		m[name] = &benchClient{name: name}
	}
	return m
}

// newOurs returns a synced Syncer over n clusters, with builds taking d.
func newOurs(b *testing.B, n int, d time.Duration, opts ...clusterregistry.Option) (*clusterregistry.Syncer[*benchClient], *clusterregistry.MemorySource) {
	b.Helper()
	src := clusterregistry.NewMemorySource(benchClusters(n, "t0")...)
	opts = append([]clusterregistry.Option{clusterregistry.WithConcurrency(64)}, opts...)
	s, err := clusterregistry.NewSyncer[*benchClient](src, sleepBuilder{d}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s, src
}

// swapper calls swap every period until the returned stop is called.
func swapper(period time.Duration, swap func(round int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for round := 1; ; round++ {
			select {
			case <-done:
				return
			case <-t.C:
				swap(round)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// --- 1. Lookup with parallel readers during continuous syncs ------------

// BenchmarkLookup measures Get by name (and Lease then Release: impl=lease)
// from parallel readers while a writer
// changes one cluster every 10ms (each change a 100µs build): a hundred
// state changes a second, far more than a fleet makes. Readers either cycle
// through every cluster (access=all: at 10,000 clusters the map outgrows the
// CPU caches, which slows even L) or through ten of them (access=hot10: the
// cost of the lookup itself, which must not depend on the number of
// clusters).
func BenchmarkLookup(b *testing.B) {
	const period, build = 10 * time.Millisecond, 100 * time.Microsecond
	for _, access := range []string{"all", "hot10"} {
		for _, n := range benchSizes {
			spread := n
			if access == "hot10" {
				spread = min(n, 10)
			}
			prefix := fmt.Sprintf("access=%s/", access)
			b.Run(fmt.Sprintf("%simpl=ours/clusters=%d", prefix, n), func(b *testing.B) {
				reg, stop := oursSyncing(b, n, period, build)
				defer stop()
				runLookups(b, spread, func(name string) bool { _, err := reg.Get(name); return err == nil })
			})
			b.Run(fmt.Sprintf("%simpl=lease/clusters=%d", prefix, n), func(b *testing.B) {
				reg, stop := oursSyncing(b, n, period, build)
				defer stop()
				runLookups(b, spread, func(name string) bool {
					l, err := reg.Lease(name)
					if err != nil {
						return false
					}
					l.Release()
					return true
				})
			})
			b.Run(fmt.Sprintf("%simpl=A/clusters=%d", prefix, n), func(b *testing.B) {
				r := &registryA{m: newBaselineMap(n)}
				stop := swapper(period, func(round int) { r.sync(sleepBuilder{build}, benchClusters(1, fmt.Sprint(round))) })
				defer stop()
				runLookups(b, spread, func(name string) bool { _, ok := r.get(name); return ok })
			})
			b.Run(fmt.Sprintf("%simpl=B/clusters=%d", prefix, n), func(b *testing.B) {
				r := &registryB{m: newBaselineMap(n)}
				stop := swapper(period, func(round int) { r.sync(sleepBuilder{build}, benchClusters(1, fmt.Sprint(round))) })
				defer stop()
				runLookups(b, spread, func(name string) bool { _, ok := r.get(name); return ok })
			})
			b.Run(fmt.Sprintf("%simpl=R/clusters=%d", prefix, n), func(b *testing.B) {
				m := newBaselineMap(n)
				r := &registryR{m: &m}
				stop := swapper(period, func(round int) { r.swap(benchClusters(1, fmt.Sprint(round))) })
				defer stop()
				runLookups(b, spread, func(name string) bool { _, ok := r.get(name); return ok })
			})
			b.Run(fmt.Sprintf("%simpl=L/clusters=%d", prefix, n), func(b *testing.B) {
				r := &registryL{}
				m := newBaselineMap(n)
				r.p.Store(&m)
				stop := swapper(period, func(round int) { r.swap(benchClusters(1, fmt.Sprint(round))) })
				defer stop()
				runLookups(b, spread, func(name string) bool { _, ok := r.get(name); return ok })
			})
		}
	}
}

// oursSyncing returns the Registry of a Syncer over n clusters, which one
// cluster's change rebuilds every period until stop.
func oursSyncing(b *testing.B, n int, period, build time.Duration) (*clusterregistry.Registry[*benchClient], func()) {
	s, src := newOurs(b, n, build)
	stop := swapper(period, func(round int) {
		src.Upsert(benchClusters(1, fmt.Sprint(round))[0])
		_, _ = s.Sync(context.Background())
	})
	return s.Registry(), stop
}

// runLookups looks up the first spread clusters' names in turn.
func runLookups(b *testing.B, spread int, get func(string) bool) {
	names := make([]string, spread)
	for i := range names {
		names[i] = fmt.Sprintf("cluster-%05d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !get(names[i%spread]) {
				panic("lookup missed")
			}
			i++
		}
	})
}

// --- 2. Snapshot, then iterate -------------------------------------------

func BenchmarkSnapshot(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("impl=ours/op=take/clusters=%d", n), func(b *testing.B) {
			s, _ := newOurs(b, n, 0)
			reg := s.Registry()
			b.ReportAllocs()
			for b.Loop() {
				_ = reg.Snapshot()
			}
		})
		b.Run(fmt.Sprintf("impl=B/op=take/clusters=%d", n), func(b *testing.B) {
			r := &registryB{m: newBaselineMap(n)}
			b.ReportAllocs()
			for b.Loop() {
				_ = r.snapshot()
			}
		})
		b.Run(fmt.Sprintf("impl=ours/op=iterate/clusters=%d", n), func(b *testing.B) {
			s, _ := newOurs(b, n, 0)
			reg := s.Registry()
			b.ReportAllocs()
			for b.Loop() {
				count := 0
				for range reg.Snapshot().All() {
					count++
				}
				if count != n {
					b.Fatal(count)
				}
			}
		})
		b.Run(fmt.Sprintf("impl=B/op=iterate/clusters=%d", n), func(b *testing.B) {
			r := &registryB{m: newBaselineMap(n)}
			b.ReportAllocs()
			for b.Loop() {
				count := 0
				for range r.snapshot() {
					count++
				}
				if count != n {
					b.Fatal(count)
				}
			}
		})
	}
}

// --- 3. Write-lock hold time per sync ----------------------------------

// BenchmarkWriteLockHold syncs one changed cluster per iteration, each build
// taking 50ms, and reports the write lock's hold time: it must not grow with
// the number of clusters or the build time. A holds its lock for the build.
func BenchmarkWriteLockHold(b *testing.B) {
	const build = 50 * time.Millisecond
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("impl=ours/clusters=%d", n), func(b *testing.B) {
			s, src := newOurs(b, n, build)
			var holds []time.Duration
			round := 0
			for b.Loop() {
				round++
				src.Upsert(benchClusters(1, fmt.Sprint(round))[0])
				rep, err := s.Sync(context.Background())
				if err != nil || len(rep.Updated) != 1 {
					b.Fatal(err, rep.Updated)
				}
				holds = append(holds, rep.LockHeld)
			}
			reportPercentiles(b, holds, "lockhold")
		})
		b.Run(fmt.Sprintf("impl=A/clusters=%d", n), func(b *testing.B) {
			r := &registryA{m: newBaselineMap(n)}
			var holds []time.Duration
			round := 0
			for b.Loop() {
				round++
				start := time.Now()
				r.sync(sleepBuilder{build}, benchClusters(1, fmt.Sprint(round)))
				holds = append(holds, time.Since(start))
			}
			reportPercentiles(b, holds, "lockhold")
		})
	}
}

func reportPercentiles(b *testing.B, ds []time.Duration, name string) {
	slices.Sort(ds)
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) }
	b.ReportMetric(at(0.5), name+"-p50-ns")
	b.ReportMetric(at(0.99), name+"-p99-ns")
}

// --- 4. Sync wall time: 100 changed clusters, one black-holed --------------

// BenchmarkSyncBlackHole changes 100 clusters of 1,000, one of them
// black-holed, with 50ms builds. Ours builds 16 at once under a 1s deadline;
// B builds one after another and waits for the black hole's own 10s cap.
func BenchmarkSyncBlackHole(b *testing.B) {
	const (
		total, changed = 1_000, 100
		build          = 50 * time.Millisecond
		timeout        = time.Second
		concurrency    = 16
	)
	changes := func(round int) []clusterregistry.Cluster {
		cs := benchClusters(changed, fmt.Sprint(round))
		cs[changed/2].Config.Host = "blackhole"
		return cs
	}
	b.Run("impl=ours", func(b *testing.B) {
		src := clusterregistry.NewMemorySource(benchClusters(total, "t0")...)
		syncer, err := clusterregistry.NewSyncer[*benchClient](src, sleepBuilder{build},
			clusterregistry.WithConcurrency(concurrency), clusterregistry.WithBuildTimeout(timeout))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := syncer.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
		round := 0
		for b.Loop() {
			round++
			next := benchClusters(total, "t0")
			copy(next, changes(round))
			src.Set(next...)
			rep, err := syncer.Sync(context.Background())
			if err != nil || len(rep.Updated) != changed-1 || len(rep.Failed) != 1 {
				b.Fatalf("%v updated=%d failed=%v", err, len(rep.Updated), rep.Failed)
			}
		}
		b.ReportMetric(float64(timeout+time.Duration((changed+concurrency-1)/concurrency)*build)/1e9, "bound-s")
	})
	b.Run("impl=B", func(b *testing.B) {
		r := &registryB{m: newBaselineMap(total)}
		round := 0
		for b.Loop() {
			round++
			r.sync(sleepBuilder{build}, changes(round))
		}
	})
}

// --- 5. A sync where nothing changed ----------------------------------

// BenchmarkSyncNoChange lists clusters that all match what is running, as a
// source that parses its store anew each time would: new but equal configs.
func BenchmarkSyncNoChange(b *testing.B) {
	for _, identical := range []bool{false, true} {
		prefix := ""
		if identical {
			prefix = "identical/"
		}
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%sclusters=%d", prefix, n), func(b *testing.B) { benchSyncNoChange(b, n, identical) })
		}
	}
}

// benchSyncNoChange syncs a listing of n clusters that does not change. The
// listing holds equal configs, or with identical the very config objects of
// the previous listing, as MemorySource and the sources' memos give them.
func benchSyncNoChange(b *testing.B, n int, identical bool) {
	listing := benchClusters(n, "t0")
	src := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		return listing, nil
	})
	s, err := clusterregistry.NewSyncer[*benchClient](src, sleepBuilder{}, clusterregistry.WithConcurrency(64))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	if !identical {
		listing = benchClusters(n, "t0") // equal, not identical
	}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := s.Sync(context.Background())
		if err != nil || rep.Builds != 0 || rep.Published {
			b.Fatal(err, rep)
		}
	}
}

// --- 6. Memory per idle cluster of the ready bundle ----------------------

// BenchmarkIdleClusterMemory builds the ready bundle for many clusters of
// one local API server and reports the heap each costs while idle, as built
// (typed and dynamic clients made on first use) and with the typed clientset
// made at once, as an eager bundle would.
func BenchmarkIdleClusterMemory(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		for _, eager := range []bool{false, true} {
			b.Run(fmt.Sprintf("eager=%v/clusters=%d", eager, n), func(b *testing.B) {
				srv := newTestAPIServer(b, "tok")
				for b.Loop() {
					b.ReportMetric(idleBytesPerCluster(b, srv, n, eager), "B/cluster")
				}
			})
		}
	}
}

func idleBytesPerCluster(b *testing.B, srv *testAPIServer, n int, eager bool) float64 {
	ctx := context.Background()
	builder := clusterregistry.ClientBuilder{}
	clients := make([]*clusterregistry.Client, n)
	before := heapInUse()
	for i := range clients {
		c, err := builder.Build(ctx, clusterregistry.Cluster{Name: benchName(i, n), Config: srv.config("tok")})
		if err != nil {
			b.Fatal(err)
		}
		if eager {
			_ = c.Kubernetes()
		}
		clients[i] = c
	}
	after := heapInUse()
	per := float64(after-before) / float64(n)
	for _, c := range clients {
		builder.Release(c)
	}
	runtime.KeepAlive(clients)
	return per
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkSyncOneChange changes one cluster of n per sync, with an instant
// build: the cost of a sync that publishes.
func BenchmarkSyncOneChange(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			listing := benchClusters(n, "t0")
			src := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
				return listing, nil
			})
			s, err := clusterregistry.NewSyncer[*benchClient](src, sleepBuilder{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				round++
				listing[round%n] = benchClusters(1, fmt.Sprint(round))[0]
				listing[round%n].Name = benchName(round, n)
				rep, err := s.Sync(context.Background())
				if err != nil || len(rep.Updated) != 1 {
					b.Fatal(err, rep)
				}
			}
		})
	}
}
