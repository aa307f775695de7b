package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
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
// NewSyncer starts nothing. Run starts the periodic loop and blocks until its
// context ends, then releases every client; it has the shape of a
// controller-runtime Runnable. Sync, Trigger and WaitForFirstSync may be
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

	syncMu    sync.Mutex // serializes syncs; protects the fields below
	stopped   bool
	started   bool
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
// Sync returns ErrStopped.
func (s *Syncer[T]) Sync(ctx context.Context) (SyncReport, error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.stopped {
		return SyncReport{}, ErrStopped
	}
	return s.syncLocked(ctx)
}

// Run syncs at once, then whenever the interval passes, a trigger arrives,
// the source reports a change (if it is a Watcher) or a failing cluster's
// backoff ends. It blocks until ctx is done; then it waits for a running sync,
// stops the source's watch, empties the Registry and releases every client
// (waiting for leases up to the drain timeout) before it returns nil.
// Run may be called once.
func (s *Syncer[T]) Run(ctx context.Context) error {
	s.syncMu.Lock()
	if s.started || s.stopped {
		s.syncMu.Unlock()
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
		timer := s.opts.clock.NewTimer(s.nextWait())
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
	s.publish(next, events)
	for _, m := range cur.members {
		if m.h != nil {
			s.release(m.name, m.h)
		}
	}
	s.syncMu.Unlock()
	s.releases.Wait()
}

// plan is what phase 2 decided for one listed cluster.
type plan[T any] struct {
	desc  Cluster
	old   *member[T]
	build bool
	// result of the build
	h   *handle[T]
	err error
}

// syncLocked runs one sync. s.syncMu must be held.
func (s *Syncer[T]) syncLocked(ctx context.Context) (SyncReport, error) {
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
			return SyncReport{Generation: cur.generation}, ctx.Err()
		}
		err = fmt.Errorf("list clusters: %w", err)
		return s.keepOnSourceError(cur, start, err), err
	}

	rep := SyncReport{}
	plans, invalid := s.planLocked(cur, listed, clk.Now())
	rep.Invalid = invalid
	s.buildAll(ctx, plans, cur.generation+1)
	if ctx.Err() != nil {
		// Cancelled mid-build: publish nothing, and release what was built.
		for i := range plans {
			if plans[i].h != nil {
				s.builder.Release(plans[i].h.client)
			}
		}
		return SyncReport{Generation: cur.generation}, ctx.Err()
	}

	next, retired, events := s.assemble(cur, plans, &rep, clk.Now())
	rep.Generation = cur.generation
	if next != nil {
		// Phase 3: publish. The write lock covers the assignment alone.
		rep.LockHeld = s.publish(next, events)
		rep.Generation, rep.Published = next.generation, true
	}

	// Phase 4, no lock held: release what left the Registry.
	for _, r := range retired {
		s.release(r.name, r.h)
	}
	s.finishLocked(&rep, start, nil)
	return rep, nil
}

// keepOnSourceError keeps the last good state, recording err beside it.
func (s *Syncer[T]) keepOnSourceError(cur *state[T], start time.Time, err error) SyncReport {
	rep := SyncReport{Generation: cur.generation}
	if cur.sourceErr == nil || cur.sourceErr.Error() != err.Error() {
		next := *cur
		next.generation++
		next.sourceErr = err
		next.syncedAt = s.opts.clock.Now()
		rep.LockHeld = s.publish(&next, nil)
		rep.Generation, rep.Published = next.generation, true
	}
	for _, m := range cur.sorted {
		if m.fail != nil {
			rep.Failed = append(rep.Failed, m.name)
		}
	}
	s.finishLocked(&rep, start, err)
	return rep
}

// publish swaps in next and queues its events for the subscribers. It
// returns how long the write lock was held.
func (s *Syncer[T]) publish(next *state[T], events []Event) time.Duration {
	s.reg.eventsMu.Lock()
	defer s.reg.eventsMu.Unlock()
	held := s.reg.swap(next, s.opts.clock.Now)
	s.reg.emitLocked(events)
	return held
}

func (s *Syncer[T]) finishLocked(rep *SyncReport, start time.Time, err error) {
	rep.Duration = s.opts.clock.Since(start)
	if !s.firstSyncDone() {
		s.firstErr = err
		close(s.firstDone)
	}
	s.opts.observer.SyncDone(*rep, err)
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

// planLocked decides, for every listed cluster, whether to keep its client,
// build a new one, or record an error; builds are left to buildAll.
func (s *Syncer[T]) planLocked(cur *state[T], listed []Cluster, now time.Time) ([]plan[T], []error) {
	var invalid []error
	var skip map[int]bool // entries whose name is not valid
	for i, c := range listed {
		if err := ValidateName(c.Name); err != nil {
			name := c.Name
			if len(name) > 64 {
				name = name[:64] + "..."
			}
			invalid = append(invalid, fmt.Errorf("cluster at index %d (%q): field name: %w", i, name, err))
			if skip == nil {
				skip = map[int]bool{}
			}
			skip[i] = true
		}
	}
	// Names listed more than once are counted; a listing sorted by name (as
	// MemorySource keeps it) shows it has none without a map.
	var count map[string]int
	if !strictlySorted(listed) {
		count = make(map[string]int, len(listed))
		for _, c := range listed {
			count[c.Name]++
		}
	}

	plans := make([]plan[T], 0, len(listed))
	for i, c := range listed {
		n := 1
		if count != nil {
			n = count[c.Name]
		}
		if skip[i] || n == 0 {
			continue
		}
		p := plan[T]{desc: c, old: cur.members[c.Name]}
		switch {
		case n > 1:
			count[c.Name] = 0 // one plan for all the entries of this name
			p.err = &FieldError{Field: "name", Err: fmt.Errorf("listed %d times", n)}
		case c.Err != nil:
			p.err = c.Err
		case c.Config == nil:
			p.err = &FieldError{Field: "config", Err: errors.New("missing")}
		case c.Config.Host == "":
			p.err = &FieldError{Field: "config.host", Err: errors.New("must not be empty")}
		case p.old != nil && p.old.h != nil && sameDescription(p.old.h.config, p.old.h.revision, c):
			// Unchanged: keep the client, whatever failed in between.
		case p.old != nil && p.old.fail != nil && p.old.fail.built &&
			sameDescription(p.old.fail.config, p.old.fail.revision, c) &&
			now.Before(p.old.fail.err.NextRetry):
			// The same description failed to build; wait for its backoff.
			p.err = p.old.fail.err
		default:
			p.build = true
		}
		plans = append(plans, p)
	}
	return plans, invalid
}

// strictlySorted reports whether every name in listed is greater than the
// one before it.
func strictlySorted(listed []Cluster) bool {
	for i := 1; i < len(listed); i++ {
		if listed[i-1].Name >= listed[i].Name {
			return false
		}
	}
	return true
}

// buildAll runs the planned builds, at most the configured number at once.
func (s *Syncer[T]) buildAll(ctx context.Context, plans []plan[T], generation uint64) {
	sem := make(chan struct{}, s.opts.concurrency)
	var wg sync.WaitGroup
	for i := range plans {
		p := &plans[i]
		if !p.build {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		// Each build has its own goroutine and deadline so that a slow
		// cluster holds up no other; buildAll waits for all of them.
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := s.opts.clock.Now()
			p.h, p.err = s.build(ctx, p.desc, generation)
			s.opts.observer.BuildDone(p.desc.Name, s.opts.clock.Since(start), p.err)
		}()
	}
	wg.Wait()
}

// abandonGrace is how long a build may take to return after its deadline
// before the Syncer stops waiting for it.
const abandonGrace = 100 * time.Millisecond

// build builds one client under the build timeout. A Builder that has not
// returned abandonGrace after its deadline is abandoned; if it returns a
// client later, that client is released.
func (s *Syncer[T]) build(ctx context.Context, c Cluster, generation uint64) (*handle[T], error) {
	ctx, cancel := s.withTimeout(ctx, s.opts.buildTimeout)
	defer cancel()

	kept := rest.CopyConfig(c.Config)
	c.Config = rest.CopyConfig(c.Config)
	builtAt := s.opts.clock.Now()

	type result struct {
		client T
		err    error
	}
	var (
		mu        sync.Mutex // protects abandoned and the send on done
		abandoned bool
		done      = make(chan result, 1)
	)
	s.releases.Add(1)
	go func() {
		defer s.releases.Done()
		client, err := s.builder.Build(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if err == nil {
				s.builder.Release(client)
			}
			return
		}
		done <- result{client, err}
	}()

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// A Builder that honours ctx returns at once; give it a moment so
		// that its own error is kept and concurrency stays bounded.
		grace := time.NewTimer(abandonGrace)
		got := true
		select {
		case r = <-done:
		case <-grace.C:
			got = false
		}
		grace.Stop()
		if !got {
			mu.Lock()
			select {
			case r = <-done:
			default:
				abandoned = true
			}
			mu.Unlock()
		}
		if abandoned {
			return nil, s.buildCtxErr(ctx)
		}
	}
	if r.err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", s.buildCtxErr(ctx), r.err)
		}
		return nil, r.err
	}
	h := newHandle(r.client, kept, c.Revision, builtAt)
	h.generation = generation
	return h, nil
}

func (s *Syncer[T]) buildCtxErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("build timed out after %v", s.opts.buildTimeout)
	}
	return fmt.Errorf("build cancelled: %w", context.Cause(ctx))
}

// retiree is a client that left the Registry.
type retiree[T any] struct {
	name string
	h    *handle[T]
}

// assemble makes the next state from the plans and their builds. It returns
// nil if nothing changed, the handles to retire after the swap, and the
// events of the change.
func (s *Syncer[T]) assemble(cur *state[T], plans []plan[T], rep *SyncReport, now time.Time) (*state[T], []retiree[T], []Event) {
	changed := cur.sourceErr != nil
	gen := cur.generation + 1
	var events []Event
	event := func(t EventType, name string, err error) {
		events = append(events, Event{Type: t, Cluster: name, Generation: gen, Err: err})
	}
	next := make([]*member[T], len(plans))
	var retired []retiree[T]
	var nextRetry time.Time
	var marked []string
	kept := 0 // plans of names that cur knows

	for i := range plans {
		p := &plans[i]
		name := p.desc.Name
		if p.desc.Default {
			marked = append(marked, name)
		}
		if p.old != nil {
			kept++
		}
		if p.build {
			rep.Builds++
		}
		// The common case at scale: nothing new about this cluster. Keep its
		// member as it is, allocating nothing.
		if old := p.old; old != nil && p.h == nil && old.isDefault == p.desc.Default && old.revision == p.desc.Revision &&
			((p.err == nil && old.fail == nil) || (p.err != nil && old.fail != nil && p.err == old.fail.err)) &&
			maps.Equal(old.labels, p.desc.Labels) {
			next[i] = old
			if old.fail != nil {
				rep.Failed = append(rep.Failed, name)
				if r := old.fail.err.NextRetry; !r.IsZero() && (nextRetry.IsZero() || r.Before(nextRetry)) {
					nextRetry = r
				}
			} else {
				rep.Unchanged++
			}
			continue
		}

		m := &member[T]{
			name:      name,
			isDefault: p.desc.Default,
			labels:    p.desc.Labels,
			revision:  p.desc.Revision,
		}
		if p.old != nil {
			m.h = p.old.h
		}
		switch {
		case p.h != nil: // built
			if m.h != nil {
				retired = append(retired, retiree[T]{name, m.h})
				rep.Updated = append(rep.Updated, name)
				event(EventUpdated, name, nil)
			} else {
				rep.Added = append(rep.Added, name)
				event(EventAdded, name, nil)
			}
			m.h = p.h
		case p.err != nil:
			m.fail = s.failureFor(p, now)
			rep.Failed = append(rep.Failed, name)
			if r := m.fail.err.NextRetry; !r.IsZero() && (nextRetry.IsZero() || r.Before(nextRetry)) {
				nextRetry = r
			}
			if p.old == nil || p.old.fail == nil || p.old.fail.err != m.fail.err {
				s.logFailure(m.fail.err)
				event(EventFailed, name, m.fail.err)
			}
		default:
			rep.Unchanged++
		}
		if m.fail == nil && p.old != nil && p.old.fail != nil {
			s.opts.logger.Info("Cluster recovered", "cluster", name)
			event(EventRecovered, name, nil)
		}
		if p.old != nil && sameMember(p.old, m) {
			m = p.old
		} else {
			changed = true
		}
		next[i] = m
	}
	s.nextRetry = nextRetry
	defaultName, defaultErr := pickDefault(cur.defaultName, marked)
	if defaultName != cur.defaultName || !sameErr(defaultErr, cur.defaultErr) {
		changed = true
	}
	sameNames := kept == len(plans) && kept == len(cur.members)
	slices.Sort(rep.Failed)
	if !changed && sameNames {
		return nil, nil, nil
	}

	var members map[string]*member[T]
	var sorted []*member[T]
	if sameNames {
		// The same names as before: copy the tables and replace what
		// changed, which costs far less than building them anew.
		members = maps.Clone(cur.members)
		sorted = slices.Clone(cur.sorted)
		for i, m := range next {
			if m != plans[i].old {
				members[m.name] = m
				j, _ := slices.BinarySearchFunc(sorted, m.name, func(e *member[T], name string) int {
					return strings.Compare(e.name, name)
				})
				sorted[j] = m
			}
		}
	} else {
		members = make(map[string]*member[T], len(next))
		for _, m := range next {
			members[m.name] = m
		}
		for _, m := range cur.sorted {
			if _, ok := members[m.name]; !ok {
				rep.Removed = append(rep.Removed, m.name)
				event(EventRemoved, m.name, nil)
				if m.h != nil {
					retired = append(retired, retiree[T]{m.name, m.h})
				}
			}
		}
		sorted = slices.SortedFunc(maps.Values(members), func(a, b *member[T]) int { return strings.Compare(a.name, b.name) })
	}
	slices.Sort(rep.Added)
	slices.Sort(rep.Updated)
	// Per cluster, in name order; within one cluster, the client's change
	// before the error's.
	slices.SortStableFunc(events, func(a, b Event) int { return strings.Compare(a.Cluster, b.Cluster) })
	return &state[T]{
		generation:  gen,
		members:     members,
		sorted:      sorted,
		defaultName: defaultName,
		defaultErr:  defaultErr,
		syncedAt:    now,
	}, retired, events
}

// failureFor returns the failure record of a plan that ended in p.err.
func (s *Syncer[T]) failureFor(p *plan[T], now time.Time) *failure {
	var prev *failure
	if p.old != nil {
		prev = p.old.fail
	}
	if prev != nil && !p.build && (prev.err == p.err || !prev.built && sameErr(prev.err.Err, p.err)) {
		return prev // waiting for its backoff, or the same unusable description
	}
	f := &failure{
		err:      &ClusterError{Cluster: p.desc.Name, Err: p.err, Since: now},
		revision: p.desc.Revision,
		built:    p.build,
	}
	if prev != nil {
		f.err.Since = prev.err.Since
	}
	if p.build {
		f.config = rest.CopyConfig(p.desc.Config)
		f.err.Attempts = 1
		if prev != nil && prev.built && sameDescription(prev.config, prev.revision, p.desc) {
			f.err.Attempts = prev.err.Attempts + 1
		}
		f.err.NextRetry = now.Add(s.backoff(f.err.Attempts))
	}
	return f
}

// backoff returns the delay before build attempt attempts+1.
func (s *Syncer[T]) backoff(attempts int) time.Duration {
	d := s.opts.backoffBase
	for i := 1; i < attempts && d < s.opts.backoffMax; i++ {
		d *= 2
	}
	d += time.Duration(rand.Float64() * jitter * float64(d))
	return min(d, s.opts.backoffMax)
}

func (s *Syncer[T]) logFailure(err *ClusterError) {
	kv := []any{"cluster", err.Cluster, "attempts", err.Attempts}
	if !err.NextRetry.IsZero() {
		kv = append(kv, "nextRetry", err.NextRetry)
	}
	s.opts.logger.Error(err.Err, "Cluster failed; keeping its last good client, if any", kv...)
}

// release hands h's client back to the Builder once its leases are returned
// (from the Release of the last one), or once the drain timeout has passed.
// Run waits for every release before it returns.
func (s *Syncer[T]) release(name string, h *handle[T]) {
	s.releases.Add(1)
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

// pickDefault applies the default cluster rules of Snapshot.DefaultName.
func pickDefault(prev string, marked []string) (string, error) {
	switch len(marked) {
	case 0:
		return "", ErrNoDefaultCluster
	case 1:
		return marked[0], nil
	}
	slices.Sort(marked)
	err := fmt.Errorf("%w: clusters %q are all marked default", ErrNoDefaultCluster, marked)
	if slices.Contains(marked, prev) {
		return prev, err
	}
	return "", err
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a == b || a.Error() == b.Error()
}

// sameMember reports whether b says nothing new beside a.
func sameMember[T any](a, b *member[T]) bool {
	return a.h == b.h && a.fail == b.fail && a.isDefault == b.isDefault &&
		a.revision == b.revision && maps.Equal(a.labels, b.labels)
}
