// Package fleet runs one worker per serving cluster of a clusterregistry
// Registry: a worker starts when a cluster gets a client, restarts when its
// client is replaced (a new token, a new address), and stops when the cluster
// goes. Each worker holds a Lease on its client, so the Syncer releases a
// replaced client only after its worker has stopped.
//
// A Fleet is the engine of multi-cluster controllers: the worker of a cluster
// starts its informers and feeds a work queue; the module
// github.com/clusterregistry/clusterregistry/controllerruntime builds its
// controllers on it.
package fleet

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/clusterregistry/clusterregistry"
)

// DefaultInterval is how often a Fleet reconciles without an event, unless
// WithInterval says otherwise.
const DefaultInterval = time.Second

// WorkFunc is the work of one cluster. It runs in a goroutine of its own,
// with no lock of the Fleet held, must return soon after ctx ends, and must
// not use client after it returns. It must not call Reconcile or Start of
// its own Fleet: they wait for it.
type WorkFunc[T any] func(ctx context.Context, cluster string, client T)

// Fleet runs a WorkFunc for every cluster of a Registry that has a client.
//
// It reconciles whenever the Registry sends an event (a cluster added,
// updated, removed, failed or recovered) and every interval as well, to
// restart work that ended on its own. Reconciling compares the current
// Snapshot with the workers, so events coalesce and none can be missed.
//
// Start has the shape of a controller-runtime Runnable. The methods of a
// Fleet are safe for concurrent use. The client type T must be comparable
// (a pointer, usually) so that the Fleet sees when a client is replaced.
type Fleet[T comparable] struct {
	reg  *clusterregistry.Registry[T]
	work WorkFunc[T]
	opts options

	// reconcileMu serializes Reconcile and the final stop; it is held while
	// workers stop (their WorkFuncs return), never while anything else waits
	// for it, and never by Workers.
	reconcileMu sync.Mutex
	mu          sync.Mutex // protects workers: held to read or change the map, for nothing slow
	workers     map[string]*worker[T]
}

// worker is the running work of one cluster.
type worker[T comparable] struct {
	name   string
	client T
	lease  *clusterregistry.Lease[T]
	cancel context.CancelFunc
	done   chan struct{} // closed when the WorkFunc returns
}

// An Option configures a Fleet.
type Option interface {
	apply(*options)
}

type options struct {
	interval time.Duration
	clock    clock.WithTicker
	log      logr.Logger
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithInterval sets how often the Fleet reconciles when the Registry sends no
// event, which restarts workers that ended on their own. Default:
// DefaultInterval. It must be positive.
func WithInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.interval = d })
}

// WithClock sets the clock of the interval; tests pass a fake one
// (k8s.io/utils/clock/testing). Default: the real clock.
func WithClock(c clock.WithTicker) Option {
	return optionFunc(func(o *options) { o.clock = c })
}

// WithLogger sets the logger, which receives a line for each worker started
// and stopped. Default: none.
func WithLogger(l logr.Logger) Option {
	return optionFunc(func(o *options) { o.log = l })
}

var (
	errNoRegistry = errors.New("fleet: nil Registry")
	errNoWork     = errors.New("fleet: nil WorkFunc")
	errInterval   = errors.New("fleet: the interval must be positive")
	errNoClock    = errors.New("fleet: nil clock")
)

// New returns a Fleet that runs work for every cluster of reg that has a
// client. It starts nothing: Start (or Reconcile) does.
func New[T comparable](reg *clusterregistry.Registry[T], work WorkFunc[T], opts ...Option) (*Fleet[T], error) {
	o := options{interval: DefaultInterval, clock: clock.RealClock{}, log: logr.Discard()}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	switch {
	case reg == nil:
		return nil, errNoRegistry
	case work == nil:
		return nil, errNoWork
	case o.interval <= 0:
		return nil, errInterval
	case o.clock == nil:
		return nil, errNoClock
	}
	return &Fleet[T]{reg: reg, work: work, opts: o, workers: make(map[string]*worker[T])}, nil
}

// Start reconciles at once, then on every event of the Registry and every
// interval, until ctx ends; then it stops every worker, waits for them and
// returns nil. A Fleet is started at most once at a time.
func (f *Fleet[T]) Start(ctx context.Context) error {
	sub := f.reg.Subscribe()
	defer sub.Close()
	changed := make(chan struct{}, 1) // coalesces: one pending reconcile
	var events sync.WaitGroup
	defer events.Wait()
	// Turns events into wake-ups; it ends when ctx does, and Start waits for
	// it (deferred above, so after the workers have stopped).
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

	tick := f.opts.clock.NewTicker(f.opts.interval)
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
// started and stopped, each sorted by name. Workers that ended on their own
// are started again. Workers started here end when ctx does, or when a later
// Reconcile stops them. It blocks while stopped workers finish: a replaced
// client's worker stops before its successor starts, so the two never run
// at once.
func (f *Fleet[T]) Reconcile(ctx context.Context) (started, stopped []string) {
	f.reconcileMu.Lock()
	defer f.reconcileMu.Unlock()
	snap := f.reg.Snapshot()

	f.mu.Lock()
	var stopping []*worker[T]
	for name, w := range f.workers {
		current, err := snap.Get(name)
		if err == nil && current == w.client && !w.ended() {
			continue // the same client, still at work
		}
		stopping = append(stopping, w)
		stopped = append(stopped, name)
	}
	f.mu.Unlock()
	f.stop(stopping)

	if ctx.Err() != nil {
		slices.Sort(stopped)
		return nil, stopped // no new work once ctx has ended
	}
	for name := range snap.All() {
		f.mu.Lock()
		_, running := f.workers[name]
		f.mu.Unlock()
		if running {
			continue
		}
		// The lease may hold a newer client than snap if a sync has just
		// run; the next Reconcile sees that snapshot and keeps the worker.
		lease, err := f.reg.Lease(name)
		if err != nil {
			continue // gone since the snapshot
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker[T]{name: name, client: lease.Client(), lease: lease, cancel: cancel, done: make(chan struct{})}
		f.mu.Lock()
		f.workers[name] = w
		f.mu.Unlock()
		// The worker's goroutine ends when wctx does; stop waits for it.
		go func() {
			defer close(w.done)
			f.work(wctx, name, w.client)
		}()
		started = append(started, name)
		f.opts.log.Info("Started worker", "cluster", name, "generation", snap.Generation())
	}
	slices.Sort(started)
	slices.Sort(stopped)
	return started, stopped
}

// Workers returns the clusters that have a worker, sorted by name.
func (f *Fleet[T]) Workers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.workers))
}

func (w *worker[T]) ended() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// stop stops workers: it cancels them all, then waits for each WorkFunc to
// return and releases its lease, which lets the Syncer release a client that
// it has replaced. Cancelling first makes stopping many workers take as long
// as the slowest, not the sum. The caller holds reconcileMu, not mu.
func (f *Fleet[T]) stop(workers []*worker[T]) {
	for _, w := range workers {
		w.cancel()
	}
	for _, w := range workers {
		<-w.done
		// Release may release a replaced client to its Builder, in this
		// goroutine: with mu not held.
		w.lease.Release()
		f.mu.Lock()
		if f.workers[w.name] == w {
			delete(f.workers, w.name)
		}
		f.mu.Unlock()
		f.opts.log.Info("Stopped worker", "cluster", w.name)
	}
}

func (f *Fleet[T]) stopAll() {
	f.reconcileMu.Lock()
	defer f.reconcileMu.Unlock()
	f.mu.Lock()
	all := slices.Collect(maps.Values(f.workers))
	f.mu.Unlock()
	f.stop(all)
}
