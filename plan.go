package clusterregistry

// Phase 2 of a sync: decide what each listed cluster needs, build what
// changed, and assemble the next state. None of it holds a lock of the
// Registry.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// plan is what phase 2 decided for one listed cluster.
type plan[T any] struct {
	desc  Cluster
	old   *member[T]
	build bool
	// result of the build
	h   *handle[T]
	err error
}

// planListing decides, for every listed cluster, whether to keep its client,
// build a new one, or record an error; builds are left to startBuilds.
func (s *Syncer[T]) planListing(cur *state[T], listed []Cluster, now time.Time) ([]plan[T], []error) {
	skip, invalid := invalidNames(listed)
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
		if n > 1 {
			count[c.Name] = 0 // one plan for all the entries of this name
			p.err = &FieldError{Field: "name", Err: fmt.Errorf("listed %d times", n)}
		} else {
			p.decide(now)
		}
		plans = append(plans, p)
	}
	return plans, invalid
}

// invalidNames returns the indexes of the entries of listed whose name is not
// valid, and an error for each.
func invalidNames(listed []Cluster) (map[int]bool, []error) {
	var skip map[int]bool
	var invalid []error
	for i, c := range listed {
		err := ValidateName(c.Name)
		if err == nil {
			continue
		}
		name := c.Name
		if len(name) > 64 {
			name = name[:64] + "..."
		}
		err = fmt.Errorf("cluster at index %d (%q): field name: %w", i, name, err)
		if c.Err != nil {
			err = fmt.Errorf("%w; the source says: %w", err, c.Err)
		}
		invalid = append(invalid, err)
		if skip == nil {
			skip = map[int]bool{}
		}
		skip[i] = true
	}
	return skip, invalid
}

// decide sets p.build or p.err for a cluster listed once.
func (p *plan[T]) decide(now time.Time) {
	c, old := p.desc, p.old
	switch {
	case c.Err != nil:
		p.err = c.Err
	case c.Config == nil:
		p.err = &FieldError{Field: "config", Err: errors.New("missing")}
	case c.Config.Host == "":
		p.err = &FieldError{Field: "config.host", Err: errors.New("must not be empty")}
	case old != nil && old.h != nil && old.h.describes(c):
		// Unchanged: keep the client, whatever failed in between.
	case old != nil && old.fail != nil && old.fail.built && old.fail.describes(c) &&
		now.Before(old.fail.err.NextRetry):
		// The same description failed to build; wait for its backoff.
		p.err = old.fail.err
	default:
		p.build = true
	}
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

// syncRun is one sync between its listing and its final publish: the plans,
// their builds, and what the partial publishes while builds ran have done.
type syncRun[T any] struct {
	s     *Syncer[T]
	cur   *state[T] // the latest state published, by this sync or before it
	plans []plan[T]
	def   defaultPick // from the whole listing, whatever is built yet

	rep       SyncReport
	early     SyncReport // what partial publishes did
	retired   []namedHandle[T]
	builds    []built[T]
	published []Event // for the log
}

// partialPublishEvery is how often a sync that waits for slow builds
// publishes the builds that have finished, so that one slow or unreachable
// cluster holds back the others by at most this long.
const partialPublishEvery = time.Second

// awaitBuilds builds what the plans ask for and waits for every build,
// publishing every partialPublishEvery what has finished meanwhile, and what
// needed no build (a removal, a new default, labels, an unusable
// description), so that a slow build holds back nothing else.
func (r *syncRun[T]) awaitBuilds(ctx context.Context) {
	waiting, done, wait := r.s.startBuilds(ctx, r.plans)
	defer wait()
	if waiting == 0 {
		return
	}
	pending := make([]bool, len(r.plans))
	for i := range r.plans {
		pending[i] = r.plans[i].build
	}
	// Something to publish at the next tick: at first, all that needs no
	// build; then the builds finished since the last partial publish.
	fresh := true
	tick := r.s.opts.clock.NewTimer(partialPublishEvery)
	defer func() { tick.Stop() }()
	for waiting > 0 {
		select {
		case b := <-done:
			waiting--
			r.plans[b.i].h, r.plans[b.i].err = b.h, b.err
			pending[b.i] = false
			if b.started {
				r.builds = append(r.builds, b)
			}
			fresh = true
		case <-tick.C():
			if fresh && ctx.Err() == nil {
				r.publishPartial(pending)
				fresh = false
			}
			tick = r.s.opts.clock.NewTimer(partialPublishEvery)
		}
	}
}

// publishPartial publishes the finished builds while those marked pending
// run on.
func (r *syncRun[T]) publishPartial(pending []bool) {
	var rep SyncReport
	r.stage(partialView(r.plans, pending), &rep)
	rebase(r.plans, pending, r.cur)
	r.early.Added = append(r.early.Added, rep.Added...)
	r.early.Updated = append(r.early.Updated, rep.Updated...)
	r.early.Removed = append(r.early.Removed, rep.Removed...)
	r.early.Builds += rep.Builds
}

// stage assembles the state that view describes and publishes it, if it
// says something new (phase 3: the write lock covers the pointer store
// alone).
func (r *syncRun[T]) stage(view []plan[T], rep *SyncReport) {
	next, gone, events := r.s.assemble(r.cur, view, r.def, rep, r.s.opts.clock.Now())
	r.retired = append(r.retired, gone...)
	if next == nil {
		return
	}
	r.rep.LockHeld = max(r.rep.LockHeld, r.s.reg.publish(next, events, gone))
	r.rep.Generation, r.rep.Published = next.generation, true
	r.cur = next
	r.published = append(r.published, events...)
}

// mergeEarly adds what the partial publishes did to the report of the final
// one.
func (r *syncRun[T]) mergeEarly() {
	r.rep.Unchanged -= len(r.early.Added) + len(r.early.Updated) // published early, unchanged since
	r.rep.Added = sortedUnion(r.early.Added, r.rep.Added)
	r.rep.Updated = sortedUnion(r.early.Updated, r.rep.Updated)
	r.rep.Removed = sortedUnion(r.early.Removed, r.rep.Removed)
	r.rep.Builds += r.early.Builds
}

// cancelled ends a sync whose context ended during its builds: it publishes
// nothing more, and hands what it built and did not publish to phase 4.
func (r *syncRun[T]) cancelled(err error) outcome[T] {
	out := outcome[T]{rep: r.rep, err: err, retired: r.retired, builds: r.builds, events: r.published}
	for i := range r.plans {
		if h := r.plans[i].h; h != nil {
			out.unpublished = append(out.unpublished, h.client)
		}
	}
	return out
}

func sortedUnion(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return out
}

// built is the outcome of the build of plans[i].
type built[T any] struct {
	i       int
	name    string
	h       *handle[T]
	err     error
	took    time.Duration
	started bool // false for a build that ctx's end kept from starting
}

// startBuilds starts the planned builds, at most the configured number at
// once, and returns how many it started, a channel that receives the outcome
// of each, and a wait for the goroutines. The caller must receive every
// outcome, and is the one to write them into the plans. A build that has not
// started when ctx ends does not start: it fails at once.
func (s *Syncer[T]) startBuilds(ctx context.Context, plans []plan[T]) (int, <-chan built[T], func()) {
	var idx []int
	for i := range plans {
		if plans[i].build {
			idx = append(idx, i)
		}
	}
	done := make(chan built[T], len(idx))
	// Each build has its own goroutine and deadline, so that a slow cluster
	// holds up no other; the caller receives every outcome, which is how it
	// waits for them.
	wait := goLimited(len(idx), s.opts.concurrency, func(j int) {
		i, desc := idx[j], plans[idx[j]].desc
		if ctx.Err() != nil {
			done <- built[T]{i: i, name: desc.Name, err: fmt.Errorf("build cancelled: %w", context.Cause(ctx))}
			return
		}
		start := s.opts.clock.Now()
		h, err := s.build(ctx, desc)
		done <- built[T]{i: i, name: desc.Name, h: h, err: err, took: s.opts.clock.Since(start), started: true}
	})
	return len(idx), done, wait
}

// abandonGrace is how long a build may take to return after its deadline
// before the Syncer stops waiting for it.
const abandonGrace = 100 * time.Millisecond

// buildResult is what a Builder's Build returned.
type buildResult[T any] struct {
	client T
	err    error
}

// pendingBuild is a build that the Syncer waits for, or has abandoned.
type pendingBuild[T any] struct {
	done      chan buildResult[T] // buffered 1
	mu        sync.Mutex          // protects abandoned, and orders it with the send on done
	abandoned bool
}

// deliver hands r to the waiting Syncer, and reports false if it has
// abandoned the build instead.
func (p *pendingBuild[T]) deliver(r buildResult[T]) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.abandoned {
		return false
	}
	p.done <- r
	return true
}

// abandon gives up on the build, unless its result has just come.
func (p *pendingBuild[T]) abandon() (buildResult[T], bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case r := <-p.done:
		return r, true
	default:
		p.abandoned = true
		return buildResult[T]{}, false
	}
}

// build builds one client under the build timeout. A Builder that has not
// returned abandonGrace after its deadline is abandoned; if it returns a
// client later, that client is released.
func (s *Syncer[T]) build(ctx context.Context, c Cluster) (*handle[T], error) {
	ctx, cancel := s.withTimeout(ctx, s.opts.buildTimeout)
	defer cancel()
	d := describeListed(c)
	c.Config = restconfig.Copy(c.Config)
	builtAt := s.opts.clock.Now()

	pb := &pendingBuild[T]{done: make(chan buildResult[T], 1)}
	s.releases.Add(1)
	// The Builder runs in a goroutine of its own so that one that ignores
	// its deadline can be abandoned; shutdown waits for it all the same.
	go func() {
		defer s.releases.Done()
		client, err := s.builder.Build(ctx, c)
		if !pb.deliver(buildResult[T]{client, err}) && err == nil {
			s.builder.Release(client) // abandoned: nobody else will
		}
	}()

	r, ok := s.awaitBuild(ctx, pb)
	switch {
	case !ok:
		return nil, s.buildCtxErr(ctx)
	case r.err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("%w: %w", s.buildCtxErr(ctx), r.err)
	case r.err != nil:
		return nil, r.err
	}
	if ff, ok := any(r.client).(failFaster); ok && !s.opts.noFailFast {
		ff.armFailFast(s.opts.clock) // before the client is published
	}
	return newHandle(r.client, d, builtAt), nil
}

// awaitBuild waits for a build's result, and for abandonGrace past ctx's
// end; then it abandons the build.
func (s *Syncer[T]) awaitBuild(ctx context.Context, pb *pendingBuild[T]) (buildResult[T], bool) {
	select {
	case r := <-pb.done:
		return r, true
	case <-ctx.Done():
	}
	// A Builder that honours ctx returns at once; give it a moment so that
	// its own error is kept and concurrency stays bounded.
	grace := time.NewTimer(abandonGrace)
	defer grace.Stop()
	select {
	case r := <-pb.done:
		return r, true
	case <-grace.C:
		return pb.abandon()
	}
}

func (s *Syncer[T]) buildCtxErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("build timed out after %v", s.opts.buildTimeout)
	}
	return fmt.Errorf("build cancelled: %w", context.Cause(ctx))
}

// namedHandle is a cluster's client: one that left the Registry, or one
// leased for a probe.
type namedHandle[T any] struct {
	name string
	h    *handle[T]
}
