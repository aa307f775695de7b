package main

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/clusterregistry/clusterregistry"
)

// Fleet runs one worker per cluster of a Registry: it starts a worker when a
// cluster gets a client, restarts it when the client is replaced (a new
// token, a new address), and stops it when the cluster goes. Each worker
// holds a Lease on its client, so the Syncer releases a replaced client only
// after its worker has stopped.
//
// Fleet reconciles whenever the Registry sends an event (Registry.Subscribe:
// a cluster added, updated, removed, failed or recovered), and every
// Interval as well, to restart work that ended on its own. Reconciling
// compares the current Snapshot with the workers, so events coalesce and none
// can be missed. Start has the shape of a controller-runtime Runnable; by
// default a manager runs it on the leader only.
type Fleet[T comparable] struct {
	// Registry is the Registry whose clusters get workers.
	Registry *clusterregistry.Registry[T]
	// Work is the per-cluster work. It runs in a goroutine of its own, must
	// return soon after ctx ends, and must not use client after it returns.
	Work func(ctx context.Context, cluster string, client T)
	// Interval is how often the Fleet reconciles without an event. Default: 1s.
	Interval time.Duration
	// Clock runs the interval; tests pass a fake one. Default: the real clock.
	Clock clock.WithTicker
	// Log receives a line for each worker started and stopped.
	Log logr.Logger

	mu      sync.Mutex // protects workers; held by Reconcile and by stopAll
	workers map[string]*worker[T]
}

// worker is the running work of one cluster.
type worker[T comparable] struct {
	name   string
	client T
	lease  *clusterregistry.Lease[T]
	cancel context.CancelFunc
	done   chan struct{} // closed when Work returns
}

// Start reconciles at once, then on every event of the Registry and every
// Interval, until ctx ends; then it stops every worker, waits for them and
// returns nil.
func (f *Fleet[T]) Start(ctx context.Context) error {
	interval, clk := f.Interval, f.Clock
	if interval <= 0 {
		interval = time.Second
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	sub := f.Registry.Subscribe()
	defer sub.Close()
	changed := make(chan struct{}, 1) // coalesces: one pending reconcile
	var events sync.WaitGroup
	defer events.Wait()
	// Turns events into wake-ups; it ends when ctx does, before Start returns.
	events.Go(func() {
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})

	tick := clk.NewTicker(interval)
	defer tick.Stop()
	for {
		f.Reconcile(ctx)
		select {
		case <-ctx.Done():
			f.stopAll()
			return nil
		case <-tick.C():
		case <-changed:
		}
	}
}

// Reconcile makes the workers match the Registry's current Snapshot: it
// starts, restarts and stops workers, and reports which clusters' workers it
// started and stopped. Workers that ended on their own are started again.
// Workers started here end when ctx does, or when a later Reconcile stops
// them. It blocks while stopped workers finish.
func (f *Fleet[T]) Reconcile(ctx context.Context) (started, stopped []string) {
	snap := f.Registry.Snapshot()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.workers == nil {
		f.workers = make(map[string]*worker[T])
	}

	var stopping []*worker[T]
	for name, w := range f.workers {
		current, err := snap.Get(name)
		if err == nil && current == w.client && !w.ended() {
			continue // the same client, still at work
		}
		stopping = append(stopping, w)
		stopped = append(stopped, name)
	}
	f.stopLocked(stopping)
	for name := range snap.All() {
		if _, ok := f.workers[name]; ok {
			continue
		}
		// The lease may hold a newer client than snap if a sync has just
		// run; the next Reconcile sees that snapshot and keeps the worker.
		lease, err := f.Registry.Lease(name)
		if err != nil {
			continue // gone since the snapshot
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker[T]{name: name, client: lease.Client(), lease: lease, cancel: cancel, done: make(chan struct{})}
		// The worker's goroutine ends when wctx does; stopLocked waits for it.
		go func() {
			defer close(w.done)
			f.Work(wctx, name, w.client)
		}()
		f.workers[name] = w
		started = append(started, name)
		f.Log.Info("Started worker", "cluster", name, "generation", snap.Generation())
	}
	return started, stopped
}

// Workers returns the clusters that have a worker, in no order.
func (f *Fleet[T]) Workers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.workers))
	for name := range f.workers {
		names = append(names, name)
	}
	return names
}

func (w *worker[T]) ended() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// stopLocked stops workers: it cancels them all, then waits for each Work to
// return and releases its lease, which lets the Syncer release a client that
// it has replaced. Cancelling first makes stopping many workers take as long
// as the slowest, not the sum.
func (f *Fleet[T]) stopLocked(workers []*worker[T]) {
	for _, w := range workers {
		w.cancel()
	}
	for _, w := range workers {
		<-w.done
		w.lease.Release()
		delete(f.workers, w.name)
		f.Log.Info("Stopped worker", "cluster", w.name)
	}
}

func (f *Fleet[T]) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked(slices.Collect(maps.Values(f.workers)))
}
