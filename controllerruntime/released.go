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
	_, err := call(r.b, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, r.Reader.Get(ctx, key, obj, opts...)
	})
	return err
}

func (r boundReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	_, err := call(r.b, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, r.Reader.List(ctx, list, opts...)
	})
	return err
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
	return call(c.b, ctx, func(ctx context.Context) (cache.Informer, error) { return c.Cache.GetInformer(ctx, obj, opts...) })
}

func (c boundCache) GetInformerForKind(ctx context.Context, gvk schema.GroupVersionKind, opts ...cache.InformerGetOption) (cache.Informer, error) {
	return call(c.b, ctx, func(ctx context.Context) (cache.Informer, error) {
		return c.Cache.GetInformerForKind(ctx, gvk, opts...)
	})
}

// WaitForCacheSync reports false once the cluster is released: its cache
// is stopped, whatever its informers had synced.
func (c boundCache) WaitForCacheSync(ctx context.Context) bool {
	synced, err := call(c.b, ctx, func(ctx context.Context) (bool, error) { return c.Cache.WaitForCacheSync(ctx), nil })
	return err == nil && synced && c.b.released() == nil
}

// call runs f with ctx, ended also when the cluster is released: at once
// with an error wrapping ErrReleased if it already is (f would only wait, or
// dial connections that the release refuses), and with f's error wrapped so
// if the release comes while f runs.
func call[T any](b *binding, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	if err := b.released(); err != nil {
		var zero T
		return zero, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(b.run, func() { cancel(ErrReleased) })
	defer func() {
		stop()
		cancel(nil)
	}()
	v, err := f(ctx)
	if err != nil && b.run.Err() != nil {
		err = fmt.Errorf("cluster %q: %w: %w", b.name, ErrReleased, err)
	}
	return v, err
}

// binding ties calls to the lifetime of one cluster's cache.
type binding struct {
	name string
	run  context.Context // cancelled by Release
}

// released returns the error of a call once the cluster is released, nil
// before.
func (b *binding) released() error {
	if b.run.Err() == nil {
		return nil
	}
	return fmt.Errorf("cluster %q: %w", b.name, ErrReleased)
}
