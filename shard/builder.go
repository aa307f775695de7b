package shard

import (
	"context"
	"sync"

	"github.com/clusterregistry/clusterregistry"
)

// Wrap returns b gated by m: it builds a cluster only while this replica
// may hold it (see Source), cancels the builds of a replica that stops
// serving, and counts every client from the start of its Build to the end of
// its Release, which is what a replica tells its peers when it says it has
// released a cluster. Give the Syncer both m.Source(src) and Wrap(m, b). A
// client that the Member released itself (after losing its Lease or at a
// stop that outlasted LeaseDuration) is not released again. b's Probe, if it
// has one, is kept. A single replica's Wrap is b.
func Wrap[T comparable](m *Member, b clusterregistry.Builder[T]) clusterregistry.Builder[T] {
	if m.single {
		return b
	}
	g := &gate[T]{m: m, b: b, clients: map[T][]*holding{}}
	f := clusterregistry.BuilderFuncs[T]{BuildFunc: g.build, ReleaseFunc: g.release}
	if bf, ok := b.(clusterregistry.BuilderFuncs[T]); ok {
		f.ProbeFunc = bf.ProbeFunc
	} else if p, ok := b.(clusterregistry.Prober[T]); ok {
		f.ProbeFunc = p.Probe
	}
	return f
}

type gate[T comparable] struct {
	m *Member
	b clusterregistry.Builder[T]

	mu      sync.Mutex // protects clients
	clients map[T][]*holding
}

func (g *gate[T]) build(ctx context.Context, c clusterregistry.Cluster) (T, error) {
	var zero T
	h, bctx, cancel, err := g.m.acquire(ctx, c.Name)
	if err != nil {
		return zero, err
	}
	defer cancel()
	client, err := g.b.Build(bctx, c)
	if err != nil {
		g.m.drop(h)
		return zero, err
	}
	if !g.m.built(h, func() { g.b.Release(client) }) {
		g.b.Release(client)
		g.m.drop(h)
		g.m.mu.Lock()
		defer g.m.mu.Unlock()
		return zero, g.m.notOwnedLocked(c.Name)
	}
	g.mu.Lock()
	g.clients[client] = append(g.clients[client], h)
	g.mu.Unlock()
	return client, nil
}

func (g *gate[T]) release(client T) {
	g.mu.Lock()
	hs := g.clients[client]
	var h *holding
	if len(hs) > 0 {
		h = hs[0]
		if len(hs) == 1 {
			delete(g.clients, client)
		} else {
			g.clients[client] = hs[1:]
		}
	}
	g.mu.Unlock()
	if h == nil {
		g.b.Release(client) // not one of ours; pass it on
		return
	}
	g.m.mu.Lock()
	forced := h.forced
	h.releasing = true
	g.m.mu.Unlock()
	if forced {
		return // released by the Member already
	}
	g.b.Release(client)
	g.m.drop(h)
}
