package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// A Syncer keeps a Registry in step with a ClusterSource. Each sync runs in
// four phases:
//
//  1. read the current state (an atomic pointer load);
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
// only Sync drives is stopped by Close instead. Run also waits for builds
// that overran their deadline, so a Builder that never returns keeps Run from
// returning. Sync, Trigger, Probe, Close and WaitForFirstSync may be called
// from any goroutine. Every callback of the caller's (Builder, Prober,
// Observer) runs with no lock of the Syncer or the Registry held.
type Syncer[T any] struct {
	source  ClusterSource
	builder Builder[T]
	prober  Prober[T] // the builder, with WithHealthCheck; nil without
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
	started   bool            // Run or Close was called
	closed    bool            // Close was called
	runDone   <-chan struct{} // Run's ctx.Done(); nil unless Run drives the Syncer
	nextRetry time.Time       // earliest backoff retry of a failing cluster; zero if none

	// releases tracks the retired clients that wait for their leases, the
	// clients a cancelled sync built and never published, and the builds
	// that overran their deadline; shutdown waits for all of them.
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
	if o.healthCheck != nil {
		if prober = proberOf(builder); prober == nil {
			var zero T
			return nil, fmt.Errorf("clusterregistry: health check: builder %T is not a Prober of %T (no Probe method)", builder, zero)
		}
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
	out := s.syncLocked(ctx)
	// Counted before the lock goes, so that a shutdown that takes it next
	// waits for these releases too.
	s.releases.Add(len(out.retired) + len(out.unpublished))
	s.syncMu.Unlock()
	if s.opts.afterSyncUnlock != nil {
		s.opts.afterSyncUnlock()
	}
	s.finish(out)
	return out.rep, out.err
}

// outcome is what a sync leaves for phase 4, which runs with no lock held.
type outcome[T any] struct {
	rep         SyncReport
	err         error
	retired     []namedHandle[T] // clients that left the Registry
	unpublished []T              // clients that a cancelled sync built
	builds      []built[T]       // for the Observer
	events      []Event          // published, for the log
}

// finish runs phase 4 of a sync, with no lock held: it releases what left
// the Registry, and tells the log and the Observer.
func (s *Syncer[T]) finish(out outcome[T]) {
	for _, r := range out.retired {
		s.release(r.name, r.h)
	}
	for _, c := range out.unpublished {
		s.builder.Release(c)
		s.releases.Done()
	}
	s.logEvents(out.events)
	rep := out.rep
	log := s.opts.logger.V(1)
	if rep.Published || out.err != nil {
		log = s.opts.logger
	}
	log.Info("Synced clusters", "generation", rep.Generation, "added", rep.Added, "updated", rep.Updated,
		"removed", rep.Removed, "failed", rep.Failed, "unchanged", rep.Unchanged,
		"duration", rep.Duration, "lockHeld", rep.LockHeld)
	for _, b := range out.builds {
		s.opts.observer.BuildDone(b.name, b.took, b.err)
	}
	s.opts.observer.SyncDone(rep, out.err)
}

// Run syncs at once, then whenever the interval passes, a trigger arrives,
// the source reports a change (if it is a Watcher) or a failing cluster's
// backoff ends. It blocks until ctx is done; then it waits for a running sync,
// stops the source's watch, empties the Registry (whose lookups then return
// ErrStopped) and releases every client (waiting for leases up to the drain
// timeout) before it returns nil. Run may be called once.
func (s *Syncer[T]) Run(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	stopWatchers := s.startWatchers(ctx)
	for {
		if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.opts.logger.Error(err, "Sync failed; keeping the last good state")
		}
		// Before the backoff check: a cancelled sync publishes nothing, so an
		// ended backoff would still read as ended, for ever.
		if ctx.Err() != nil || !s.wait(ctx) {
			break
		}
	}
	stopWatchers()
	s.shutdown()
	return nil
}

// start marks the Syncer as driven by Run, whose context ctx is.
func (s *Syncer[T]) start(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("clusterregistry: Syncer.Run after Close: %w", ErrStopped)
	case s.started:
		return errors.New("clusterregistry: Syncer.Run called twice")
	}
	s.started, s.runDone = true, ctx.Done()
	return nil
}

// startWatchers starts the source's watch, if it is a Watcher, and the
// probe loop, if probing is on. stop ends both and waits for them.
func (s *Syncer[T]) startWatchers(ctx context.Context) (stop func()) {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	if s.prober != nil {
		wg.Add(1)
		// Probes from the first sync on, until stop; stop waits for it.
		go func() {
			defer wg.Done()
			select {
			case <-s.firstDone:
				s.probeLoop(ctx)
			case <-ctx.Done():
			}
		}()
	}
	if w, ok := s.source.(Watcher); ok {
		wg.Add(1)
		// The watch lives until stop; stop waits for it.
		go func() {
			defer wg.Done()
			if err := w.Watch(ctx, s.Trigger); err != nil && ctx.Err() == nil {
				s.opts.logger.Error(err, "Source watch ended; syncing on the interval only")
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// wait waits for the next reason to sync, and reports false if ctx ended
// instead.
func (s *Syncer[T]) wait(ctx context.Context) bool {
	wait := s.nextWait()
	if wait <= 0 {
		return true // a backoff has ended: sync now
	}
	timer := s.opts.clock.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C():
	case <-s.trigger:
		// Put it back: the sync drains pending triggers when it starts.
		s.Trigger()
	}
	return ctx.Err() == nil
}

// Close stops a Syncer that Run does not drive (one kept current by calling
// Sync): it waits for a running sync, empties the Registry (whose lookups
// then return ErrStopped) and releases every client, waiting for leases up to
// the drain timeout, as Run does when its context ends. Syncs that have not
// started by then return ErrStopped, and Run refuses to start. Close may be
// called more than once: every call returns once everything is released.
// While Run drives the Syncer, Close returns an error (cancel Run's context
// instead); once that context has ended, Close waits for Run's own release
// of every client and returns nil.
func (s *Syncer[T]) Close() error {
	s.syncMu.Lock()
	switch {
	case s.stopped, s.started && isDone(s.runDone):
		// By an earlier Close, or by Run as its context ends.
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

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
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
	final := &state[T]{
		generation: cur.generation + 1,
		sourceErr:  ErrStopped,
		defaultErr: fmt.Errorf("%w: %w", ErrNoDefaultCluster, ErrStopped),
		syncedAt:   s.opts.clock.Now(),
		stopped:    true,
	}
	var events []Event
	var held []*member[T]
	for _, m := range cur.sorted {
		events = append(events, Event{Type: EventRemoved, Name: m.name, Generation: final.generation})
		if m.h != nil {
			held = append(held, m)
		}
	}
	s.reg.stop(final, events)
	s.releases.Add(len(held))
	s.syncMu.Unlock()

	for _, m := range held {
		s.release(m.name, m.h)
	}
	s.releases.Wait()
	close(s.drained)
}

// syncLocked runs phases 1 to 3 of one sync. s.syncMu must be held. It
// returns what phase 4 has to do once s.syncMu is let go.
func (s *Syncer[T]) syncLocked(ctx context.Context) outcome[T] {
	start := s.opts.clock.Now()
	// A trigger that came before this sync started is served by it.
	select {
	case <-s.trigger:
	default:
	}
	// Phase 1: the current state.
	cur := s.reg.load()

	// Phase 2, no lock held: list the source and build what changed.
	listed, err := s.list(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return outcome[T]{rep: SyncReport{Generation: cur.generation}, err: ctx.Err()}
		}
		return outcome[T]{rep: s.keepOnSourceError(cur, start, err), err: err}
	}
	plans, invalid := s.planListing(cur, listed, s.opts.clock.Now())
	r := &syncRun[T]{s: s, cur: cur, plans: plans, def: pickDefault(cur.defaultName, plans)}
	r.rep = SyncReport{Generation: cur.generation, Invalid: invalid}
	r.awaitBuilds(ctx)
	if ctx.Err() != nil {
		return r.cancelled(ctx.Err())
	}
	// Phase 3, inside stage: publish.
	r.stage(plans, &r.rep)
	r.mergeEarly()
	s.finishLocked(&r.rep, start, nil)
	return outcome[T]{rep: r.rep, retired: r.retired, builds: r.builds, events: r.published}
}

// list lists the source under the source timeout.
func (s *Syncer[T]) list(ctx context.Context) ([]Cluster, error) {
	listCtx, cancel := context.WithTimeout(ctx, s.opts.sourceTimeout)
	listed, err := s.source.List(listCtx)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("list clusters: %w", err)
	case len(listed) > s.opts.maxClusters:
		return nil, fmt.Errorf("list clusters: listed %d clusters, more than the limit of %d (WithMaxClusters)",
			len(listed), s.opts.maxClusters)
	}
	return listed, nil
}

// keepOnSourceError keeps the last good state, recording err beside it.
func (s *Syncer[T]) keepOnSourceError(cur *state[T], start time.Time, err error) SyncReport {
	rep := SyncReport{Generation: cur.generation}
	if cur.sourceErr == nil || cur.sourceErr.Error() != err.Error() {
		next := *cur
		next.generation++
		next.sourceErr = err
		next.syncedAt = s.opts.clock.Now()
		rep.LockHeld = s.reg.publish(&next, nil, nil)
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

func (s *Syncer[T]) finishLocked(rep *SyncReport, start time.Time, err error) {
	rep.Duration = s.opts.clock.Since(start)
	if !s.firstSyncDone() {
		s.firstErr = err
		close(s.firstDone)
	}
}

func (s *Syncer[T]) firstSyncDone() bool { return isDone(s.firstDone) }

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
	// In a goroutine of its own: a fake clock runs AfterFunc's function under
	// its lock, and Release is the caller's code. shutdown waits for it
	// (free marks it done in s.releases).
	t := s.opts.clock.AfterFunc(s.opts.drainTimeout, func() { go free(true) })
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
