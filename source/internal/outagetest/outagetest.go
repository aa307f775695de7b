// Package outagetest takes a fake client's API server down and up again, for
// the tests of sources that watch it.
package outagetest

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
)

// An Outage makes one resource of a fake client unreachable on demand, as
// when the API server is down: lists and watches are refused, the way a
// dial to a closed port is.
type Outage struct {
	down    atomic.Bool
	expire  atomic.Bool
	mu      sync.Mutex
	watches []*watch.RaceFreeFakeWatcher
}

// New prepends the Outage's reactors for resource to f (a fake clientset's
// or dynamic client's Fake). Watches it serves deliver no events.
func New(f *k8stesting.Fake, resource string) *Outage {
	o := &Outage{}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	f.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		if o.down.Load() {
			return true, nil, refused
		}
		return false, nil, nil
	})
	f.PrependWatchReactor(resource, func(k8stesting.Action) (bool, watch.Interface, error) {
		switch {
		case o.down.Load():
			return true, nil, refused
		case o.expire.CompareAndSwap(true, false):
			return true, nil, apierrors.NewResourceExpired("too old resource version")
		}
		w := watch.NewRaceFreeFake()
		o.mu.Lock()
		o.watches = append(o.watches, w)
		o.mu.Unlock()
		return true, w, nil
	})
	return o
}

// Cut takes the server down and ends its watches, as its death does.
func (o *Outage) Cut() {
	o.down.Store(true)
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.watches {
		w.Stop()
	}
	o.watches = nil
}

// Restore brings the server back. Its first watch answers 410 Gone, so that
// an informer lists again (a real server's watch would replay what changed).
func (o *Outage) Restore() {
	o.expire.Store(true)
	o.down.Store(false)
}
