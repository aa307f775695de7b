package clusterregistry

// Phase 2 of a sync: decide what each listed cluster needs, build what
// changed, and assemble the next state. None of it holds a lock of the
// Registry.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
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

// planLocked decides, for every listed cluster, whether to keep its client,
// build a new one, or record an error; builds are left to startBuilds.
func (s *Syncer[T]) planLocked(cur *state[T], listed []Cluster, now time.Time) ([]plan[T], []error) {
	var invalid []error
	var skip map[int]bool // entries whose name is not valid
	for i, c := range listed {
		if err := ValidateName(c.Name); err != nil {
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

// built is the outcome of the build of plans[i].
type built[T any] struct {
	i   int
	h   *handle[T]
	err error
}

// startBuilds starts the planned builds, at most the configured number at
// once, and returns how many it started and a channel that receives the
// outcome of each. The caller must receive all of them, and is the one to
// write them into the plans.
func (s *Syncer[T]) startBuilds(ctx context.Context, plans []plan[T]) (int, <-chan built[T]) {
	var idx []int
	for i := range plans {
		if plans[i].build {
			idx = append(idx, i)
		}
	}
	done := make(chan built[T], len(idx))
	if len(idx) == 0 {
		return 0, done
	}
	sem := make(chan struct{}, s.opts.concurrency)
	// The spawner waits for free slots so that the sync can publish what is
	// done meanwhile; each build has its own goroutine and deadline so that a
	// slow cluster holds up no other. The caller receives every index.
	go func() {
		for _, i := range idx {
			sem <- struct{}{}
			desc := plans[i].desc
			go func() {
				start := s.opts.clock.Now()
				h, err := s.build(ctx, desc)
				s.opts.observer.BuildDone(desc.Name, s.opts.clock.Since(start), err)
				<-sem
				done <- built[T]{i, h, err}
			}()
		}
	}()
	return len(idx), done
}

// abandonGrace is how long a build may take to return after its deadline
// before the Syncer stops waiting for it.
const abandonGrace = 100 * time.Millisecond

// build builds one client under the build timeout. A Builder that has not
// returned abandonGrace after its deadline is abandoned; if it returns a
// client later, that client is released.
func (s *Syncer[T]) build(ctx context.Context, c Cluster) (*handle[T], error) {
	ctx, cancel := s.withTimeout(ctx, s.opts.buildTimeout)
	defer cancel()

	kept := restconfig.Copy(c.Config)
	c.Config = restconfig.Copy(c.Config)
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
	return newHandle(r.client, kept, c.Revision, builtAt), nil
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
			p.h.generation = gen
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
		if m.h != nil {
			m.client = m.h.client
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
		f.config = restconfig.Copy(p.desc.Config)
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

// rebase makes the plans relative to cur, the state a partial publish has
// just made, so that the final publish repeats nothing: what was published
// (every plan but the pending builds) now reads as unchanged.
func rebase[T any](plans []plan[T], pending []bool, cur *state[T]) {
	for i := range plans {
		p := &plans[i]
		p.old = cur.members[p.desc.Name]
		if !pending[i] {
			p.keepOld()
		}
	}
}

// keepOld makes p say "leave the cluster as p.old has it": no build, and
// p.old's failure, if any, as the error (which assemble then keeps as is).
func (p *plan[T]) keepOld() {
	p.build, p.h, p.err = false, nil, nil
	if p.old != nil && p.old.fail != nil {
		p.err = p.old.fail.err
	}
}

// partialView is plans as they stand while the builds marked pending run:
// a pending build keeps its cluster as it is, and a new cluster waits.
func partialView[T any](plans []plan[T], pending []bool) []plan[T] {
	view := make([]plan[T], 0, len(plans))
	for i, p := range plans {
		if pending[i] {
			if p.old == nil {
				continue
			}
			p.keepOld()
		}
		view = append(view, p)
	}
	return view
}
