package clusterregistry

import "context"

// A Builder makes the per-cluster client of a Registry and releases it when a
// sync replaces or removes its cluster. The client type T is the caller's
// choice: the ready bundle *Client (see NewClientBuilder), or a struct of the
// caller's own that holds, say, a controller-runtime cache beside a clientset.
//
// The Syncer calls Build with no lock held, several at once (WithConcurrency),
// each under its own deadline (WithBuildTimeout); Build must honour ctx. The
// Cluster's Config is a copy made for this call, which the client may keep.
// The error of Build should name the failing field or call and must never
// contain a credential.
//
// Release is called exactly once for every client Build returned, after the
// client has left the Registry and its leases were released (or the drain
// timeout passed), with no lock held. It stops whatever the client started.
type Builder[T any] interface {
	Build(ctx context.Context, c Cluster) (T, error)
	Release(client T)
}

// BuilderFuncs adapts a pair of functions to a Builder. A nil ReleaseFunc
// releases nothing.
type BuilderFuncs[T any] struct {
	BuildFunc   func(ctx context.Context, c Cluster) (T, error)
	ReleaseFunc func(client T)
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
