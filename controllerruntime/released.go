package controllerruntime

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrReleased is the error, wrapped with the cluster's name, of a read from
// the cache of a Cluster that its Builder has released (the cluster left
// the Registry, or its client was replaced).
//
// Its text reads: cluster "NAME": released: followed by what the cache said.
//
// A released cache never syncs again: controller-runtime would let a read of
// a kind not yet synced (or not yet watched) wait for the caller's deadline.
// A reconcile that got the cluster from the Registry just before the release
// would then hold its worker, and every later request of that cluster, for
// its whole timeout. The reads of a Cluster's client and cache end at the
// release instead.
var ErrReleased = errors.New("released")

// boundReader is a cache reader whose reads end when the cluster is
// released.
type boundReader struct {
	client.Reader
	b *binding
}

func (r boundReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.b.released(); err != nil {
		return err
	}
	ctx, stop := r.b.bind(ctx)
	defer stop()
	return r.b.wrap(r.Reader.Get(ctx, key, obj, opts...))
}

func (r boundReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.b.released(); err != nil {
		return err
	}
	ctx, stop := r.b.bind(ctx)
	defer stop()
	return r.b.wrap(r.Reader.List(ctx, list, opts...))
}

// boundCache is a Cluster's cache as its users see it: reads, and waits for
// an informer or for the sync, end when the cluster is released.
type boundCache struct {
	cache.Cache
	b *binding
}

func (c boundCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return boundReader{Reader: c.Cache, b: c.b}.Get(ctx, key, obj, opts...)
}

func (c boundCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return boundReader{Reader: c.Cache, b: c.b}.List(ctx, list, opts...)
}

func (c boundCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	if err := c.b.released(); err != nil {
		return nil, err
	}
	ctx, stop := c.b.bind(ctx)
	defer stop()
	inf, err := c.Cache.GetInformer(ctx, obj, opts...)
	return inf, c.b.wrap(err)
}

func (c boundCache) GetInformerForKind(ctx context.Context, gvk schema.GroupVersionKind, opts ...cache.InformerGetOption) (cache.Informer, error) {
	if err := c.b.released(); err != nil {
		return nil, err
	}
	ctx, stop := c.b.bind(ctx)
	defer stop()
	inf, err := c.Cache.GetInformerForKind(ctx, gvk, opts...)
	return inf, c.b.wrap(err)
}

// WaitForCacheSync reports false once the cluster is released: its cache
// is stopped, whatever its informers had synced.
func (c boundCache) WaitForCacheSync(ctx context.Context) bool {
	if c.b.released() != nil {
		return false
	}
	ctx, stop := c.b.bind(ctx)
	defer stop()
	return c.Cache.WaitForCacheSync(ctx) && c.b.released() == nil
}

// binding ties calls to the lifetime of one cluster's cache.
type binding struct {
	name string
	run  context.Context // cancelled by Release
}

// bind returns ctx, ended also when the cluster is released.
func (b *binding) bind(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(b.run, func() { cancel(ErrReleased) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// released returns the error of a call made once the cluster is released
// (nil before): the call would only wait, or dial connections that the
// release refuses.
func (b *binding) released() error {
	if b.run.Err() == nil {
		return nil
	}
	return fmt.Errorf("cluster %q: %w", b.name, ErrReleased)
}

// wrap names the cluster in err if the cluster has been released: whatever
// the cache answered then (a timeout waiting for a sync, a cancelled
// context), the cause is the release.
func (b *binding) wrap(err error) error {
	if err == nil || b.run.Err() == nil {
		return err
	}
	return fmt.Errorf("cluster %q: %w: %w", b.name, ErrReleased, err)
}
