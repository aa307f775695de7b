package shard

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterregistry/clusterregistry"
)

// listing is what the last List of the Source served.
type listing struct {
	served  map[string]bool      // the clusters it returned
	known   map[string]bool      // the clusters of the source it filtered
	waiting map[string]time.Time // owned but not yet released by a peer, since
	reasons map[string]string    // why each cluster entered or left it
	owned   int
}

// Source returns src filtered down to the clusters that this replica may
// serve: those its view gives it and that no peer still holds. It is a
// clusterregistry.Watcher (it asks for a sync whenever that set may change,
// besides passing on src's own watch) and a clusterregistry.Reasoner (the
// Registry's Added and Removed events of a handoff say why). While the
// replica has not joined its group, has lost its Lease or is stopping, it
// lists no cluster, without asking src. A single replica's Source is src.
func (m *Member) Source(src clusterregistry.ClusterSource) clusterregistry.ClusterSource {
	if m.single {
		return src
	}
	return &source{m: m, inner: src}
}

type source struct {
	m     *Member
	inner clusterregistry.ClusterSource
}

func (s *source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	m := s.m
	m.mu.Lock()
	serving := m.servingLocked()
	m.mu.Unlock()
	if !serving {
		return m.filter(nil), nil
	}
	cs, err := s.inner.List(ctx)
	if err != nil {
		return nil, err
	}
	return m.filter(cs), nil
}

// filter returns the clusters of cs that the replica may serve, and records
// the handoffs since the last listing.
func (m *Member) filter(cs []clusterregistry.Cluster) []clusterregistry.Cluster {
	m.mu.Lock()
	now := m.cfg.Clock.Now()
	prev := m.list
	next := listing{
		served:  make(map[string]bool, len(prev.served)),
		waiting: make(map[string]time.Time, len(prev.waiting)),
		reasons: map[string]string{},
		known:   make(map[string]bool, len(cs)),
	}
	serving := m.servingLocked()
	if !serving {
		next.known = prev.known // the source was not asked
	}
	var out []clusterregistry.Cluster
	for _, c := range cs {
		next.known[c.Name] = true
		if !serving || m.view.Owner(c.Name) != m.cfg.Identity {
			continue
		}
		next.owned++
		if !m.allowedLocked(c.Name) {
			since, ok := prev.waiting[c.Name]
			if !ok {
				since = now
			}
			next.waiting[c.Name] = since
			continue
		}
		out = append(out, c)
		next.served[c.Name] = true
		// Not a handoff: a cluster that the source has just added.
		if !prev.served[c.Name] && prev.known[c.Name] {
			h := Handoff{Cluster: c.Name, In: true, Reason: m.inReasonLocked(c.Name)}
			if since, ok := prev.waiting[c.Name]; ok {
				h.Waited = now.Sub(since)
			}
			m.handoffLocked(h, &next)
		}
	}
	for name := range prev.served {
		if !next.served[name] && (next.known[name] || !serving) {
			m.handoffLocked(Handoff{Cluster: name, Reason: m.outReasonLocked(name)}, &next)
		}
	}
	next.owned = max(next.owned, len(out))
	changed := next.owned != prev.owned || len(next.waiting) != len(prev.waiting) || len(next.reasons) > 0
	m.list = next
	m.mu.Unlock()
	if changed {
		select {
		case m.notify <- struct{}{}:
		default:
		}
	}
	return out
}

func (m *Member) handoffLocked(h Handoff, next *listing) {
	next.reasons[h.Cluster] = "shard: " + h.Reason
	m.handoffs = append(m.handoffs, h)
	if h.In {
		m.counts.HandoffsIn++
		m.counts.WaitTotal += h.Waited
	} else {
		m.counts.HandoffsOut++
	}
}

// inReasonLocked says why the replica now serves cluster.
func (m *Member) inReasonLocked(cluster string) string {
	switch from := m.prevView.Owner(cluster); {
	case from == "" || from == m.cfg.Identity:
		return fmt.Sprintf("owned by %s in view %s", m.cfg.Identity, m.view)
	default:
		return fmt.Sprintf("moved here from %s (%s)", from, viewChange(m.prevView, m.view))
	}
}

// outReasonLocked says why the replica no longer serves cluster.
func (m *Member) outReasonLocked(cluster string) string {
	switch {
	case m.lost:
		return "this replica could not renew its Lease"
	case m.leaving:
		return "this replica is stopping"
	case !m.joined:
		return "this replica has not joined its group"
	}
	to := m.view.Owner(cluster)
	return fmt.Sprintf("moved to %s (%s)", to, viewChange(m.prevView, m.view))
}

// viewChange describes the change from one view to the next.
func viewChange(from, to View) string {
	var joined, left []string
	for _, r := range to.Replicas {
		if !from.Has(r.Identity) {
			joined = append(joined, r.Identity)
		}
	}
	for _, r := range from.Replicas {
		if !to.Has(r.Identity) {
			left = append(left, r.Identity)
		}
	}
	switch {
	case len(joined) > 0 && len(left) > 0:
		return fmt.Sprintf("%v joined, %v left", joined, left)
	case len(joined) > 0:
		return fmt.Sprintf("%v joined", joined)
	case len(left) > 0:
		return fmt.Sprintf("%v left", left)
	}
	return "weights changed"
}

func (s *source) Reason(name string) string {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.m.list.reasons[name]
}

// Watch asks for a sync whenever the replica's share may have changed, and
// passes on the source's own watch if it has one, until ctx ends.
func (s *source) Watch(ctx context.Context, changed func()) error {
	m := s.m
	m.mu.Lock()
	id := m.nextWatcher
	m.nextWatcher++
	m.watchers[id] = changed
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, id)
		m.mu.Unlock()
	}()
	changed()
	if w, ok := s.inner.(clusterregistry.Watcher); ok {
		if err := w.Watch(ctx, changed); err != nil && ctx.Err() == nil {
			m.log.Error(err, "The source's watch ended; the source is synced on the interval only")
		}
	}
	<-ctx.Done()
	return nil
}
