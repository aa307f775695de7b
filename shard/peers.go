package shard

import (
	"context"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"
)

// watchPeers keeps the peers' records up to date with one list and one
// watch of the group's Leases, listing again whenever the watch ends.
func (m *Member) watchPeers(ctx context.Context) {
	leases := m.cfg.Client.Leases(m.cfg.Namespace)
	sel := GroupLabel + "=" + m.cfg.Group
	for ctx.Err() == nil {
		list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			m.log.V(1).Info("Could not list the peers' Leases", "err", err.Error())
			m.pause(ctx)
			continue
		}
		m.observeAll(list.Items)
		w, err := leases.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
		if err != nil {
			m.log.V(1).Info("Could not watch the peers' Leases", "err", err.Error())
			m.pause(ctx)
			continue
		}
		m.consume(ctx, w)
		w.Stop()
	}
}

// consume applies w's events until it ends.
func (m *Member) consume(ctx context.Context, w watch.Interface) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			l, isLease := ev.Object.(*coordv1.Lease)
			switch {
			case ev.Type == watch.Error || !isLease:
				return
			case ev.Type == watch.Deleted:
				m.forget(l)
			case ev.Type == watch.Added || ev.Type == watch.Modified:
				m.observe(l)
			}
		}
	}
}

func (m *Member) pause(ctx context.Context) {
	t := m.cfg.Clock.NewTimer(m.cfg.RetryPeriod)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}

// observeAll applies a fresh list of the Leases: peers missing from it left.
func (m *Member) observeAll(ls []coordv1.Lease) {
	m.mu.Lock()
	before := m.peersListed
	seen := map[string]bool{}
	for i := range ls {
		if r, ok := parseLease(&ls[i]); ok {
			seen[r.identity] = true
			m.observeLocked(r)
		}
	}
	for id := range m.peers {
		if !seen[id] {
			delete(m.peers, id)
		}
	}
	first := !before && m.peersListed
	if first && m.written && !m.lost {
		m.joined = true
		m.askWrite() // with the view
	}
	notify := m.recomputeLocked() || first && m.joined
	m.mu.Unlock()
	if notify {
		m.changed()
	}
}

func (m *Member) observe(l *coordv1.Lease) {
	r, ok := parseLease(l)
	if !ok {
		return
	}
	m.mu.Lock()
	before := m.peersListed
	m.observeLocked(r)
	first := !before && m.peersListed
	if first && m.written && !m.lost {
		m.joined = true
		m.askWrite() // with the view
	}
	notify := m.recomputeLocked() || first && m.joined
	m.mu.Unlock()
	if notify {
		m.changed()
	}
}

// observeLocked records a peer's Lease; a Lease that changed restarts the
// peer's time.
func (m *Member) observeLocked(r record) {
	if r.identity == m.cfg.Identity {
		if r.instance == m.instance {
			m.peersListed = true
		}
		return
	}
	p := m.peers[r.identity]
	if p == nil {
		p = &peer{}
		m.peers[r.identity] = p
	}
	if c, err := resourceversion.CompareResourceVersion(r.rv, p.rv); err == nil && c < 0 {
		// Older than what this replica knows (a lagging watch after a
		// fresh read): going back would revive a settlement since undone.
		return
	}
	if p.version != r.version {
		p.seen = m.cfg.Clock.Now()
		p.dead = false
	}
	p.record = r
}

// forget drops a peer whose Lease was deleted: it released everything
// before it deleted it.
func (m *Member) forget(l *coordv1.Lease) {
	r, ok := parseLease(l)
	if !ok {
		return
	}
	m.mu.Lock()
	if p := m.peers[r.identity]; p != nil && r.identity != m.cfg.Identity {
		delete(m.peers, r.identity)
	}
	notify := m.recomputeLocked()
	m.mu.Unlock()
	if notify {
		m.changed()
	}
}

// checkPeers reads afresh the Lease of every peer that this replica has not
// seen change for its lease duration: one unchanged since is dead, one gone
// is forgotten. The watch alone may be stale; a fresh read is not. Silence
// counts from this replica's return after it lost its Lease: an outage of
// the hub is no peer's death. A replica
// that lost its Lease reads every live peer afresh: what it knows of them
// may date from before, and a settlement on a view of the same members then
// must not count as one now.
func (m *Member) checkPeers(ctx context.Context) {
	type suspect struct {
		identity, name, version string
		expired                 bool
	}
	var sus []suspect
	m.mu.Lock()
	for id, p := range m.peers {
		d := p.duration
		if d <= 0 {
			d = m.cfg.LeaseDuration
		}
		// A peer's silence counts only while this replica could write:
		// after it could not (a hub outage silences every replica alike),
		// from its return. While it returns (lost, its write just done),
		// none has expired yet.
		from := p.seen
		if m.lost {
			from = m.cfg.Clock.Now()
		} else if from.Before(m.regainedAt) {
			from = m.regainedAt
		}
		expired := m.cfg.Clock.Since(from) >= d
		if !p.dead && (expired || m.lost) {
			sus = append(sus, suspect{id, p.name, p.version, expired})
		}
	}
	m.mu.Unlock()
	for _, s := range sus {
		l, err := m.cfg.Client.Leases(m.cfg.Namespace).Get(ctx, s.name, metav1.GetOptions{})
		m.mu.Lock()
		p := m.peers[s.identity]
		switch {
		case p == nil || p.version != s.version:
			// Changed meanwhile: the watch saw it.
		case apierrors.IsNotFound(err):
			delete(m.peers, s.identity)
		case err != nil:
			// Unknown: it stays alive; if the hub is out of reach, this
			// replica loses its own Lease first.
		case sameVersion(l, s.version) && !s.expired:
			// Unchanged, and not expired: nothing new.
		case sameVersion(l, s.version):
			p.dead = true
			m.counts.Expiries++
			m.log.Info("A peer's Lease expired", "peer", s.identity, "lastSeen", time.Duration(m.cfg.Clock.Since(p.seen)).String())
		default:
			if r, ok := parseLease(l); ok {
				m.observeLocked(r)
			}
		}
		notify := m.recomputeLocked()
		m.mu.Unlock()
		if notify {
			m.changed()
		}
	}
}

func sameVersion(l *coordv1.Lease, version string) bool {
	r, ok := parseLease(l)
	return ok && r.version == version
}
