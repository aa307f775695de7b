package clusterregistry

// The end of phase 2: the next state, assembled from the plans and their
// builds, with its events.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// defaultPick is the default cluster that a listing gives.
type defaultPick struct {
	name string // "" for none
	err  error  // why there is no (unambiguous) default
}

// pickDefault applies the default cluster rules of Snapshot.DefaultName to
// every cluster of the listing, built or not, so that partial publishes and
// the final one agree whatever the builds' timing. prev is the default
// before the sync.
func pickDefault[T any](prev string, plans []plan[T]) defaultPick {
	var marked []string
	for i := range plans {
		if plans[i].desc.Default {
			marked = append(marked, plans[i].desc.Name)
		}
	}
	switch len(marked) {
	case 0:
		return defaultPick{err: ErrNoDefaultCluster}
	case 1:
		return defaultPick{name: marked[0]}
	}
	slices.Sort(marked)
	err := fmt.Errorf("%w: clusters %q are all marked default", ErrNoDefaultCluster, marked)
	if slices.Contains(marked, prev) {
		return defaultPick{name: prev, err: err}
	}
	return defaultPick{err: err}
}

// assembly is the making of one next state; see assemble.
type assembly[T any] struct {
	s         *Syncer[T]
	gen       uint64 // of the next state
	now       time.Time
	rep       *SyncReport
	events    []Event
	retired   []namedHandle[T]
	nextRetry time.Time
	changed   bool
}

// assemble makes the next state from cur, plans and their builds, and def.
// It returns nil if nothing changed, the handles to retire after the swap,
// and the events of the change.
func (s *Syncer[T]) assemble(cur *state[T], plans []plan[T], def defaultPick, rep *SyncReport, now time.Time) (*state[T], []namedHandle[T], []Event) {
	a := &assembly[T]{s: s, gen: cur.generation + 1, now: now, rep: rep, changed: cur.sourceErr != nil}
	next := make([]*member[T], len(plans))
	known := 0 // plans of names that cur knows
	for i := range plans {
		if plans[i].old != nil {
			known++
		}
		if plans[i].build {
			rep.Builds++
		}
		next[i] = a.member(&plans[i])
	}
	s.nextRetry = a.nextRetry
	if def.name != cur.defaultName || !sameErr(def.err, cur.defaultErr) {
		a.changed = true
	}
	sameNames := known == len(plans) && known == len(cur.members)
	slices.Sort(rep.Failed)
	if !a.changed && sameNames {
		return nil, nil, nil
	}
	members, sorted := a.tables(cur, plans, next, sameNames)
	slices.Sort(rep.Added)
	slices.Sort(rep.Updated)
	// Per cluster, in name order; within one cluster, the client's change
	// before the error's.
	slices.SortStableFunc(a.events, func(x, y Event) int { return strings.Compare(x.Name, y.Name) })
	return &state[T]{
		generation:  a.gen,
		members:     members,
		sorted:      sorted,
		defaultName: def.name,
		defaultErr:  def.err,
		syncedAt:    now,
	}, a.retired, a.events
}

// member returns the member that p makes: p.old itself when p says nothing
// new about it.
func (a *assembly[T]) member(p *plan[T]) *member[T] {
	if p.unchanged() {
		a.keep(p.old)
		return p.old
	}
	m := &member[T]{name: p.desc.Name, isDefault: p.desc.Default, labels: p.desc.Labels, revision: p.desc.Revision}
	if p.old != nil {
		m.h = p.old.h
	}
	switch {
	case p.h != nil:
		a.built(m, p)
	case p.err != nil:
		a.failed(m, p)
	default:
		a.rep.Unchanged++
	}
	if m.h != nil {
		m.client = m.h.client
	}
	if m.fail == nil && p.old != nil && p.old.fail != nil {
		a.event(EventRecovered, m.name, nil)
	}
	if p.old != nil && sameMember(p.old, m) {
		return p.old
	}
	a.changed = true
	return m
}

// unchanged reports whether p leaves its cluster exactly as p.old has it:
// the common case at scale, which allocates nothing.
func (p *plan[T]) unchanged() bool {
	old := p.old
	return old != nil && p.h == nil && old.isDefault == p.desc.Default && old.revision == p.desc.Revision &&
		((p.err == nil && old.fail == nil) || (p.err != nil && old.fail != nil && p.err == old.fail.err)) &&
		maps.Equal(old.labels, p.desc.Labels)
}

// keep counts a member that stays as it is.
func (a *assembly[T]) keep(old *member[T]) {
	if old.fail == nil {
		a.rep.Unchanged++
		return
	}
	a.rep.Failed = append(a.rep.Failed, old.name)
	a.noteRetry(old.fail.err.NextRetry)
}

// built gives m the client that p built.
func (a *assembly[T]) built(m *member[T], p *plan[T]) {
	if m.h != nil {
		a.retired = append(a.retired, namedHandle[T]{m.name, m.h})
		a.rep.Updated = append(a.rep.Updated, m.name)
		a.event(EventUpdated, m.name, nil)
	} else {
		a.rep.Added = append(a.rep.Added, m.name)
		a.event(EventAdded, m.name, nil)
	}
	m.h = p.h
	p.h.generation = a.gen
}

// failed gives m the failure that p ended in.
func (a *assembly[T]) failed(m *member[T], p *plan[T]) {
	m.fail = a.s.failureFor(p, a.now)
	a.rep.Failed = append(a.rep.Failed, m.name)
	a.noteRetry(m.fail.err.NextRetry)
	if p.old == nil || p.old.fail == nil || p.old.fail.err != m.fail.err {
		a.event(EventFailed, m.name, m.fail.err)
	}
}

func (a *assembly[T]) noteRetry(at time.Time) {
	if !at.IsZero() && (a.nextRetry.IsZero() || at.Before(a.nextRetry)) {
		a.nextRetry = at
	}
}

func (a *assembly[T]) event(t EventType, name string, err error) {
	e := Event{Type: t, Name: name, Generation: a.gen, Err: err}
	if r, ok := a.s.source.(Reasoner); ok && (t == EventAdded || t == EventRemoved) {
		e.Reason = r.Reason(name)
	}
	a.events = append(a.events, e)
}

// tables returns the next state's map and sorted slice of members, and
// retires the members that left.
func (a *assembly[T]) tables(cur *state[T], plans []plan[T], next []*member[T], sameNames bool) (map[string]*member[T], []*member[T]) {
	if sameNames {
		// The same names as before: copy the tables and replace what
		// changed, which costs far less than building them anew.
		members, sorted := maps.Clone(cur.members), slices.Clone(cur.sorted)
		for i, m := range next {
			if m != plans[i].old {
				members[m.name] = m
				j, _ := slices.BinarySearchFunc(sorted, m.name, func(e *member[T], name string) int {
					return strings.Compare(e.name, name)
				})
				sorted[j] = m
			}
		}
		return members, sorted
	}
	members := make(map[string]*member[T], len(next))
	for _, m := range next {
		members[m.name] = m
	}
	for _, m := range cur.sorted {
		if _, ok := members[m.name]; !ok {
			a.rep.Removed = append(a.rep.Removed, m.name)
			a.event(EventRemoved, m.name, nil)
			if m.h != nil {
				a.retired = append(a.retired, namedHandle[T]{m.name, m.h})
			}
		}
	}
	sorted := slices.SortedFunc(maps.Values(members), func(x, y *member[T]) int { return strings.Compare(x.name, y.name) })
	return members, sorted
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
		err:         &ClusterError{Name: p.desc.Name, Err: p.err, Since: now},
		description: description{revision: p.desc.Revision},
		built:       p.build,
	}
	if prev != nil {
		f.err.Since = prev.err.Since
	}
	if p.build {
		f.description = describeListed(p.desc)
		f.err.Attempts = 1
		if prev != nil && prev.built && prev.describes(p.desc) {
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

// logEvents logs the failures and recoveries among events. No lock is held:
// the logger's sink is the caller's code.
func (s *Syncer[T]) logEvents(events []Event) {
	for _, ev := range events {
		var ce *ClusterError
		switch {
		case ev.Type == EventRecovered:
			s.opts.logger.Info("Cluster recovered", "cluster", ev.Name)
		case ev.Type == EventFailed && errors.As(ev.Err, &ce):
			kv := []any{"cluster", ce.Name, "attempts", ce.Attempts}
			if !ce.NextRetry.IsZero() {
				kv = append(kv, "nextRetry", ce.NextRetry)
			}
			s.opts.logger.Error(ce.Err, "Cluster failed; keeping its last good client, if any", kv...)
		}
	}
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
