package clusterregistry

import (
	"context"
	"errors"
)

// A Builder makes the per-cluster client of a Registry and releases it when a
// sync replaces or removes its cluster. The client type T is the caller's
// choice: the ready bundle *Client (ClientBuilder), or a struct of the
// caller's own that holds, say, a controller-runtime cache beside a clientset.
// A Builder that is also a Prober[T] can probe its clients (WithHealthCheck).
//
// The Syncer calls Build with no lock held, several at once (WithConcurrency),
// each under its own deadline (WithBuildTimeout); Build must honour ctx. The
// Cluster's Config is a copy made for this call, which the client may keep.
// The error of Build should name the failing field or call and must never
// contain a credential. Build runs during a sync, so it must not call Sync or
// Close, which wait for that sync.
//
// Release is called exactly once for every client Build returned, after the
// client has left the Registry and its leases were released (or the drain
// timeout passed), or at once for a client built by a sync that was cancelled
// before publishing it. It runs with no lock of the Syncer or the Registry
// held: it may call any Registry method, Sync and Trigger, but not Close, and
// it must not wait for Run to return: both wait for every Release. It stops
// whatever the client started.
type Builder[T any] interface {
	Build(ctx context.Context, c Cluster) (T, error)
	Release(client T)
}

// BuilderFuncs adapts functions to a Builder. A nil ReleaseFunc releases
// nothing. With a ProbeFunc it is also a Prober (see WithHealthCheck).
type BuilderFuncs[T any] struct {
	BuildFunc   func(ctx context.Context, c Cluster) (T, error)
	ReleaseFunc func(client T)
	ProbeFunc   func(ctx context.Context, client T) error
}

// Build calls b.BuildFunc.
func (b BuilderFuncs[T]) Build(ctx context.Context, c Cluster) (T, error) {
	return b.BuildFunc(ctx, c)
}

// Release calls b.ReleaseFunc, if set.
func (b BuilderFuncs[T]) Release(client T) {
	if b.ReleaseFunc != nil {
		b.ReleaseFunc(client)
	}
}

// Probe calls b.ProbeFunc. Without one, it returns an error (and NewSyncer
// refuses WithHealthCheck).
func (b BuilderFuncs[T]) Probe(ctx context.Context, client T) error {
	if b.ProbeFunc == nil {
		return errNoProbeFunc
	}
	return b.ProbeFunc(ctx, client)
}

var errNoProbeFunc = errors.New("BuilderFuncs has no ProbeFunc")

// proberOf returns b's Prober, or nil if b cannot probe.
func proberOf[T any](b Builder[T]) Prober[T] {
	if bf, ok := b.(BuilderFuncs[T]); ok && bf.ProbeFunc == nil {
		return nil
	}
	if p, ok := b.(Prober[T]); ok {
		return p
	}
	return nil
}
