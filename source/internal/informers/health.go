// Package informers runs the informers of a source's Watch, and tells
// whether an informer's cache may be stale.
//
// While an informer cannot list or watch (the API server restarting, a
// broken connection) its reflector retries with a backoff that grows to half
// a minute, and meanwhile its cache stays as it was, with no error to show.
// A source that reads the cache asks Fresh first and lists from the API
// server itself while it is false, so that a listing is never stale without
// an error to say so; a Set asks the source's user to list again while an
// informer fails, so that the source's recovery need not wait for the
// reflector's backoff.
package informers

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Health follows the lists and watches of one informer.
type Health struct {
	mu      sync.Mutex // protects failing
	failing bool
}

// ListWatch returns the ListerWatcher of an informer whose lists and
// watches h follows: it calls list and watch, and records whether the last
// of them failed. client is the client that list and watch use: a fake one
// tells client-go not to use streaming lists, as the generated informers do.
func (h *Health) ListWatch(
	client any,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			h.report(ctx, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			h.report(ctx, err)
			return w, err
		},
	}, client)
}

func (h *Health) report(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the informer is stopping: no news of the server
	}
	h.mu.Lock()
	h.failing = err != nil
	h.mu.Unlock()
}

// Fresh reports whether the informer's last list or watch succeeded: its
// cache is current or catching up with a watch that delivers what it
// missed.
func (h *Health) Fresh() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.failing
}
