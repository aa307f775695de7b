package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// A Syncer keeps a Registry in step with a ClusterSource. Each sync runs in
// four phases:
//
//  1. read the current state (the Registry's read lock, for a pointer read);
//  2. with no lock held, list the source, compare every cluster with what is
//     running, and build clients for new and changed clusters only, in
//     parallel (WithConcurrency), each under its own deadline
//     (WithBuildTimeout);
//  3. publish the new state under the write lock, which is held for one
//     pointer assignment whatever the number of clusters or their speed;
//  4. with no lock held, release the clients that were replaced or removed,
//     each once its leases are returned (or WithDrainTimeout has passed).
//
// At most one sync runs at a time. A cluster whose build fails keeps its last
// good client, with the error beside it, and is retried with exponential
// backoff (WithBackoff). A source that fails to List leaves the whole last
// good state in place.
//
// NewSyncer starts nothing (the zero Syncer is not usable). Run starts the
// periodic loop and blocks until its context ends, then releases every
// client; it has the shape of a controller-runtime Runnable. A Syncer that
// only Sync drives is stopped by Close instead. Run also waits
// for builds that overran their deadline, so a Builder that never returns
// keeps Run from returning. Sync, Trigger and WaitForFirstSync may be
// called from any goroutine.
type Syncer[T any] struct {
	source  ClusterSource
	builder Builder[T]
	prober  Prober[T] // nil unless WithHealthCheck
	opts    options
	reg     *Registry[T]

	probeMu sync.Mutex             // serializes probe rounds; protects reauths
	reauths map[*handle[T]]*reauth // source re-reads asked for by 401s

	trigger   chan struct{} // buffered 1: pending triggers coalesce into one sync
	firstDone chan struct{} // closed when the first sync has finished

	// firstErr is written once, before firstDone is closed.
	firstErr error

	drained chan struct{} // closed when shutdown has released every client

	syncMu    sync.Mutex // serializes syncs; protects the fields below
	stopped   bool
	started   bool      // Run or Close was called
	closed    bool      // Close was called
	nextRetry time.Time // earliest backoff retry of a failing cluster; zero if none

	// releases tracks the retired clients that wait for their leases, and
	// the builds that overran their deadline; Run waits for both.
	releases sync.WaitGroup
}

// SyncReport says what one sync did.
type SyncReport struct {
	// Generation is the Registry's generation after the sync. It grows only
	// when the sync published a new state.
	Generation uint64
	// Published reports whether the sync published a new state.
	Published bool
	// Added, Updated and Removed name the clusters that gained a first
	// client, got a new client, or left the source. Sorted.
	Added, Updated, Removed []string
	// Failed names every cluster that has an error after the sync, whether it
	// failed now or is waiting for its backoff. Each keeps its last good
	// client, if it had one. Sorted.
	Failed []string
	// Unchanged counts the clusters that kept their client without a build.
	Unchanged int
	// Builds counts the builds the sync attempted.
	Builds int
	// Invalid lists entries whose name is not valid (see ValidateName);
	// they were ignored.
	Invalid []error
	// Duration is the sync's wall time on the Syncer's clock.
	Duration time.Duration
	// LockHeld is how long the Registry's write lock was held; zero when
	// nothing was published.
	LockHeld time.Duration
}

// NewSyncer returns a Syncer that keeps a new Registry in step with source,
// building clients with builder. It validates the options and starts nothing.
func NewSyncer[T any](source ClusterSource, builder Builder[T], opts ...Option) (*Syncer[T], error) {
	if source == nil {
		return nil, errors.New("clusterregistry: source must not be nil")
	}
	if builder == nil {
		return nil, errors.New("clusterregistry: builder must not be nil")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("clusterregistry: %w", err)
	}
	var prober Prober[T]
	if o.prober != nil {
		p, ok := o.prober.(Prober[T])
		if !ok {
			var zero T
			return nil, fmt.Errorf("clusterregistry: health check prober is a %T, not a Prober of %T", o.prober, zero)
		}
		prober = p
	}
	return &Syncer[T]{
		source:    source,
		builder:   builder,
		prober:    prober,
		opts:      o,
		reg:       newRegistry[T](),
		trigger:   make(chan struct{}, 1),
		firstDone: make(chan struct{}),
		drained:   make(chan struct{}),
	}, nil
}

// Registry returns the Registry that the Syncer keeps.
func (s *Syncer[T]) Registry() *Registry[T] { return s.reg }

// Trigger asks for a sync soon and returns at once. Any number of triggers
// that arrive while a sync runs cause exactly one more sync. Triggers take
// effect while Run runs; one made before Run starts is served by its first
// sync.
func (s *Syncer[T]) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// WaitForFirstSync blocks until the first sync has finished, or ctx is done.
// It returns the first sync's error (a source that could not be listed), or
// ctx's error.
func (s *Syncer[T]) WaitForFirstSync(ctx context.Context) error {
	select {
	case <-s.firstDone:
		return s.firstErr // written before firstDone was closed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sync runs one sync now and returns its report. It waits for a sync already
// running to finish first. The error is the source's, or ctx's; errors of
// single clusters are in the Registry and the report. After Run has returned,
// or Close was called, Sync returns ErrStopped.
func (s *Syncer[T]) Sync(ctx context.Context) (SyncReport, error) {
	s.syncMu.Lock()
	if s.stopped {
		s.syncMu.Unlock()
		return SyncReport{}, ErrStopped
	}
	rep, retired, err := s.syncLocked(ctx)
	// Counted before the lock goes, so that a shutdown that takes it next
	// waits for these releases too.
	s.releases.Add(len(retired))
	s.syncMu.Unlock()
	if testHookAfterSyncUnlock != nil {
		testHookAfterSyncUnlock()
	}

	// Phase 4, no lock held: release what left the Registry.
	for _, r := range retired {
		s.release(r.name, r.h)
	}
	s.opts.observer.SyncDone(rep, err)
	return rep, err
}

// testHookAfterSyncUnlock, when set by a test, runs in Sync between the end
// of the sync and the release of what it retired.
var testHookAfterSyncUnlock func()

// Run syncs at once, then whenever the interval passes, a trigger arrives,
// the source reports a change (if it is a Watcher) or a failing cluster's
// backoff ends. It blocks until ctx is done; then it waits for a running sync,
// stops the source's watch, empties the Registry and releases every client
// (waiting for leases up to the drain timeout) before it returns nil.
// Run may be called once.
func (s *Syncer[T]) Run(ctx context.Context) error {
	s.syncMu.Lock()
	if s.started {
		closed := s.closed
		s.syncMu.Unlock()
		if closed {
			return fmt.Errorf("clusterregistry: Syncer.Run after Close: %w", ErrStopped)
		}
		return errors.New("clusterregistry: Syncer.Run called twice")
	}
	s.started = true
	s.syncMu.Unlock()

	var watchers sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	if s.prober != nil {
		watchers.Add(1)
		// Probes from the first sync on; stopWatch ends it and Run waits.
		go func() {
			defer watchers.Done()
			select {
			case <-s.firstDone:
				s.probeLoop(watchCtx)
			case <-watchCtx.Done():
			}
		}()
	}
	if w, ok := s.source.(Watcher); ok {
		watchers.Add(1)
		// The watch lives as long as Run; stopWatch ends it and Run waits.
		go func() {
			defer watchers.Done()
			if err := w.Watch(watchCtx, s.Trigger); err != nil && watchCtx.Err() == nil {
				s.opts.logger.Error(err, "Source watch ended; syncing on the interval only")
			}
		}()
	}

	for {
		if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.opts.logger.Error(err, "Sync failed; keeping the last good state")
		}
		if ctx.Err() != nil {
			// Before the backoff check: a cancelled sync publishes nothing,
			// so an ended backoff would still read as ended, for ever.
			break
		}
		wait := s.nextWait()
		if wait <= 0 {
			continue // a backoff has ended: sync now
		}
		timer := s.opts.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C():
		case <-s.trigger:
			// Put it back: the sync drains pending triggers when it starts.
			s.Trigger()
		}
		timer.Stop()
		if ctx.Err() != nil {
			break
		}
	}

	stopWatch()
	watchers.Wait()
	s.shutdown()
	return nil
}

// Close stops a Syncer that Run does not drive (one kept current by calling
// Sync): it waits for a running sync, empties the Registry and releases
// every client, waiting for leases up to the drain timeout, as Run does when
// its context ends. Syncs that have not started by then return ErrStopped,
// and Run refuses to start. Close may be called more than once: every call
// returns once everything is released. It returns an error while Run drives
// the Syncer (Run's context stops it); once that context has ended, it waits
// for Run's own release of every client and returns nil.
func (s *Syncer[T]) Close() error {
	s.syncMu.Lock()
	switch {
	case s.stopped: // by an earlier Close, or by Run as its context ended
		s.syncMu.Unlock()
		<-s.drained
		return nil
	case s.started:
		s.syncMu.Unlock()
		return errors.New("clusterregistry: Syncer.Close of a Syncer that Run drives; cancel Run's context instead")
	}
	// stopped at once: no sync starts between this and shutdown.
	s.started, s.stopped, s.closed = true, true, true
	s.syncMu.Unlock()
	s.shutdown()
	return nil
}

// nextWait returns how long Run waits before its next sync: the interval,
// lengthened at random, or less if a failing cluster's backoff ends sooner.
func (s *Syncer[T]) nextWait() time.Duration {
	wait := s.opts.interval + time.Duration(rand.Float64()*jitter*float64(s.opts.interval))
	s.syncMu.Lock()
	retry := s.nextRetry
	s.syncMu.Unlock()
	if !retry.IsZero() {
		wait = min(wait, max(0, retry.Sub(s.opts.clock.Now())))
	}
	return wait
}

// shutdown empties the Registry and releases every client.
func (s *Syncer[T]) shutdown() {
	s.syncMu.Lock()
	s.stopped = true
	if !s.firstSyncDone() {
		s.firstErr = ErrStopped
		close(s.firstDone)
	}
	cur := s.reg.load()
	next := &state[T]{
		generation: cur.generation + 1,
		sourceErr:  ErrStopped,
		defaultErr: fmt.Errorf("%w: %w", ErrNoDefaultCluster, ErrStopped),
		syncedAt:   s.opts.clock.Now(),
	}
	var events []Event
	for _, m := range cur.sorted {
		events = append(events, Event{Type: EventRemoved, Cluster: m.name, Generation: next.generation})
	}
	s.publish(next, events, nil)
	var held []*member[T]
	for _, m := range cur.sorted {
		if m.h != nil {
			held = append(held, m)
		}
	}
	s.releases.Add(len(held))
	s.syncMu.Unlock()

	for _, m := range held {
		s.release(m.name, m.h)
	}
	s.releases.Wait()
	close(s.drained)
}

// partialPublishEvery is how often a sync that waits for slow builds
// publishes the builds that have finished, so that one slow or unreachable
// cluster holds back the others by at most this long.
const partialPublishEvery = time.Second

// syncLocked runs one sync. s.syncMu must be held. It returns the clients
// that left the Registry, for the caller to release once it has let go of
// s.syncMu.
func (s *Syncer[T]) syncLocked(ctx context.Context) (SyncReport, []retiree[T], error) {
	clk := s.opts.clock
	start := clk.Now()
	// A trigger that came before this sync started is served by it.
	select {
	case <-s.trigger:
	default:
	}

	// Phase 1: the current state.
	cur := s.reg.load()

	// Phase 2, no lock held: list the source and build what changed.
	listCtx, cancel := context.WithTimeout(ctx, s.opts.sourceTimeout)
	listed, err := s.source.List(listCtx)
	cancel()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil && len(listed) > s.opts.maxClusters {
		err = fmt.Errorf("listed %d clusters, more than the limit of %d (WithMaxClusters)", len(listed), s.opts.maxClusters)
	}
	if err != nil {
		if ctx.Err() != nil {
			return SyncReport{Generation: cur.generation}, nil, ctx.Err()
		}
		err = fmt.Errorf("list clusters: %w", err)
		return s.keepOnSourceError(cur, start, err), nil, err
	}

	plans, invalid := s.planLocked(cur, listed, clk.Now())
	rep := SyncReport{Generation: cur.generation, Invalid: invalid}
	var retired []retiree[T]
	stage := func(view []plan[T], r *SyncReport) {
		next, gone, events := s.assemble(cur, view, r, clk.Now())
		retired = append(retired, gone...)
		if next != nil {
			// Phase 3: publish. The write lock covers the assignment alone.
			rep.LockHeld = max(rep.LockHeld, s.publish(next, events, gone))
			rep.Generation, rep.Published = next.generation, true
			cur = next
		}
	}

	// While builds run, publish every partialPublishEvery what has finished.
	waiting, done := s.startBuilds(ctx, plans)
	pending := make([]bool, len(plans))
	for i := range plans {
		pending[i] = plans[i].build
	}
	var early SyncReport // what partial publishes did
	fresh := 0           // builds finished since the last publish
	var tick clock.Timer
	if waiting > 0 {
		tick = clk.NewTimer(partialPublishEvery)
	}
	for waiting > 0 {
		select {
		case b := <-done:
			waiting--
			plans[b.i].h, plans[b.i].err = b.h, b.err
			pending[b.i] = false
			fresh++
		case <-tick.C():
			if fresh > 0 && ctx.Err() == nil {
				var r SyncReport
				stage(partialView(plans, pending), &r)
				rebase(plans, pending, cur)
				early.Added = append(early.Added, r.Added...)
				early.Updated = append(early.Updated, r.Updated...)
				early.Removed = append(early.Removed, r.Removed...)
				early.Builds += r.Builds
				fresh = 0
			}
			tick = clk.NewTimer(partialPublishEvery)
		}
	}
	if tick != nil {
		tick.Stop()
	}
	if ctx.Err() != nil {
		// Cancelled mid-build: publish nothing more, and release what was
		// built and not published.
		for i := range plans {
			if plans[i].h != nil {
				s.builder.Release(plans[i].h.client)
			}
		}
		return rep, retired, ctx.Err()
	}

	stage(plans, &rep)
	rep.Unchanged -= len(early.Added) + len(early.Updated) // published early, unchanged since
	rep.Added = sortedUnion(early.Added, rep.Added)
	rep.Updated = sortedUnion(early.Updated, rep.Updated)
	rep.Removed = sortedUnion(early.Removed, rep.Removed)
	rep.Builds += early.Builds
	s.finishLocked(&rep, start, nil)
	return rep, retired, nil
}

func sortedUnion(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return out
}

// keepOnSourceError keeps the last good state, recording err beside it.
func (s *Syncer[T]) keepOnSourceError(cur *state[T], start time.Time, err error) SyncReport {
	rep := SyncReport{Generation: cur.generation}
	if cur.sourceErr == nil || cur.sourceErr.Error() != err.Error() {
		next := *cur
		next.generation++
		next.sourceErr = err
		next.syncedAt = s.opts.clock.Now()
		rep.LockHeld = s.publish(&next, nil, nil)
		rep.Generation, rep.Published = next.generation, true
	}
	for _, m := range cur.sorted {
		if m.fail != nil {
			rep.Failed = append(rep.Failed, m.name)
		}
	}
	// No build happens while the source fails: backoff retries wait for
	// the interval, rather than waking Run again and again.
	s.nextRetry = time.Time{}
	s.finishLocked(&rep, start, err)
	return rep
}

// publish swaps in next and queues its events for the subscribers. A client
// that replaces another starts with its predecessor's health, so that the
// cluster's health reads the same to subscribers until the new client is
// probed. It returns how long the write lock was held.
func (s *Syncer[T]) publish(next *state[T], events []Event, replaced []retiree[T]) time.Duration {
	s.reg.eventsMu.Lock()
	defer s.reg.eventsMu.Unlock()
	// Under eventsMu no probe result lands, so the inherited health is the
	// latest.
	for _, r := range replaced {
		if m := next.members[r.name]; m != nil && m.h != nil && m.h != r.h {
			m.h.health.Store(r.h.health.Load())
		}
	}
	held := s.reg.swap(next)
	s.reg.emitLocked(events)
	return held
}

func (s *Syncer[T]) finishLocked(rep *SyncReport, start time.Time, err error) {
	rep.Duration = s.opts.clock.Since(start)
	if !s.firstSyncDone() {
		s.firstErr = err
		close(s.firstDone)
	}
	log := s.opts.logger.V(1)
	if rep.Published || err != nil {
		log = s.opts.logger
	}
	log.Info("Synced clusters", "generation", rep.Generation, "added", rep.Added, "updated", rep.Updated,
		"removed", rep.Removed, "failed", rep.Failed, "unchanged", rep.Unchanged,
		"duration", rep.Duration, "lockHeld", rep.LockHeld)
}

func (s *Syncer[T]) firstSyncDone() bool {
	select {
	case <-s.firstDone:
		return true
	default:
		return false
	}
}

// release hands h's client back to the Builder once its leases are returned
// (from the Release of the last one), or once the drain timeout has passed.
// The caller has counted it in s.releases, with s.syncMu held, so that the
// shutdown of Run or Close waits for it.
func (s *Syncer[T]) release(name string, h *handle[T]) {
	var (
		freed atomic.Bool // the first of the two paths to set it releases
		mu    sync.Mutex  // protects timer
		timer clock.Timer
	)
	free := func(expired bool) {
		if !freed.CompareAndSwap(false, true) {
			return
		}
		if expired {
			s.opts.logger.Info("Releasing a client that is still leased: drain timeout passed",
				"cluster", name, "leases", h.leases.Load(), "drainTimeout", s.opts.drainTimeout)
		} else {
			// Not from the timer's own callback: a fake clock runs that under
			// its lock, which Stop takes too.
			mu.Lock()
			t := timer
			mu.Unlock()
			if t != nil {
				t.Stop()
			}
		}
		s.builder.Release(h.client)
		s.releases.Done()
	}
	if h.retire(func() { free(false) }) {
		return
	}
	t := s.opts.clock.AfterFunc(s.opts.drainTimeout, func() { free(true) })
	mu.Lock()
	timer = t
	mu.Unlock()
	if freed.Load() {
		t.Stop() // the last lease went while the timer was being set
	}
}

// withTimeout returns a context that ends after d on the Syncer's clock, so
// that tests can time builds out with a fake clock.
func (s *Syncer[T]) withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := s.opts.clock.(clock.RealClock); ok {
		return context.WithTimeout(ctx, d)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	t := s.opts.clock.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() { t.Stop(); cancel(context.Canceled) }
}
