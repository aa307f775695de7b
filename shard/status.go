package shard

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Status is what a replica knows of its group, for status pages and logs.
type Status struct {
	Identity  string
	Group     string
	Namespace string
	// Serving reports whether the replica serves clusters: it has joined
	// its group, renews its Lease in time, and is not stopping.
	Serving bool
	// Lost reports that the replica could not renew its Lease before its
	// renew deadline; Leaving, that Run's context ended.
	Lost, Leaving bool
	// View is the set of live replicas that the replica sees.
	View View
	// Settled is the ID of the view that its Lease says it has settled on.
	Settled string
	// Replicas is what the replica knows of every replica of its group,
	// itself included, sorted by identity.
	Replicas []ReplicaStatus
	// WaitingFor lists the replicas of the view that have not settled on
	// it: until they have, the replica builds no cluster newly given to it.
	WaitingFor []string
	// Owned counts the clusters that the last listing served; Waiting, the
	// clusters the view gives this replica that wait for a peer's release.
	Owned, Waiting int
	// Held counts the clients held: built or being built, not yet released.
	Held int
	// LongestWait is how long the longest-waiting of those has waited.
	LongestWait time.Duration
	// LastRenew is when the last successful renewal of the Lease began.
	LastRenew time.Time
	Counts    Counts
}

// ReplicaStatus is what a replica knows of one replica of its group.
type ReplicaStatus struct {
	Identity string
	Weight   int
	// View and Settled are the view IDs that the replica's Lease carries.
	View, Settled string
	// Alive reports whether the replica is in the view: its Lease changed
	// within its lease duration, or has not been confirmed expired.
	Alive bool
	// LastSeen is when this replica last saw its Lease change (its own
	// Lease: when it last renewed it).
	LastSeen time.Time
}

// Counts are the replica's running totals, for metrics.
type Counts struct {
	Renewals    uint64 // successful Lease writes
	LeaseLosses uint64 // renew deadlines missed
	ViewChanges uint64
	Expiries    uint64        // peers' Leases found expired
	HandoffsIn  uint64        // clusters gained from a shard change
	HandoffsOut uint64        // clusters given up because of a shard change
	WaitTotal   time.Duration // summed over HandoffsIn: time from owned to served
}

// A Handoff is a cluster that a replica starts or stops serving because of a
// shard change (not because the source added or removed it).
type Handoff struct {
	Cluster string
	// In is true for a cluster this replica now serves, false for one it
	// gave up.
	In bool
	// Reason says why, in words: "moved here from replica-a (replica-a
	// left)", "moved to replica-d (replica-d joined)", "this replica could
	// not renew its Lease".
	Reason string
	// Waited is, for a cluster gained, how long it waited for its previous
	// owner's release.
	Waited time.Duration
}

// An Observer receives a replica's status whenever it changes, and each
// handoff, in order, from one goroutine, with no lock of the Member held.
// It must not block for long: a slow Observer delays later deliveries (and
// only those).
type Observer interface {
	StatusChanged(Status)
	Handoff(Handoff)
}

// Status returns what the replica knows now.
func (m *Member) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statusLocked()
}

func (m *Member) statusLocked() Status {
	s := Status{
		Identity:  m.cfg.Identity,
		Group:     m.cfg.Group,
		Namespace: m.cfg.Namespace,
		Serving:   m.servingLocked(),
		Lost:      m.lost,
		Leaving:   m.leaving,
		View:      m.view,
		Settled:   m.published,
		Owned:     m.list.owned,
		Waiting:   len(m.list.waiting),
		LastRenew: m.lastRenew,
		Counts:    m.counts,
	}
	if !m.single {
		s.WaitingFor = m.waitingForLocked()
	}
	for _, hs := range m.held {
		s.Held += len(hs)
	}
	s.Replicas = append(s.Replicas, ReplicaStatus{
		Identity: m.cfg.Identity, Weight: m.cfg.Weight, View: m.view.ID, Settled: m.published,
		Alive: s.Serving, LastSeen: m.lastRenew,
	})
	for id, p := range m.peers {
		s.Replicas = append(s.Replicas, ReplicaStatus{
			Identity: id, Weight: p.weight, View: p.view, Settled: p.settled,
			Alive: m.view.Has(id), LastSeen: p.seen,
		})
	}
	slices.SortFunc(s.Replicas, func(a, b ReplicaStatus) int { return strings.Compare(a.Identity, b.Identity) })
	now := m.cfg.Clock.Now()
	for _, since := range m.list.waiting {
		s.LongestWait = max(s.LongestWait, now.Sub(since))
	}
	return s
}

// deliver hands the status and the handoffs to the Observer, until ctx
// ends.
func (m *Member) deliver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.notify:
		}
		m.mu.Lock()
		st, hs := m.statusLocked(), m.handoffs
		m.handoffs = nil
		m.mu.Unlock()
		if o := m.cfg.Observer; o != nil {
			for _, h := range hs {
				o.Handoff(h)
			}
			o.StatusChanged(st)
		}
	}
}
