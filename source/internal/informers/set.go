package informers

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// NudgePeriod is how often a Set whose informer fails asks for a List.
const NudgePeriod = 2 * time.Second

// A Set is the informers of one run of a source's Watch. It calls changed
// for every change they see once all have synced (the initial list is no
// change), and every NudgePeriod while one of them fails.
type Set struct {
	changed func()
	nudge   time.Duration
	synced  atomic.Bool
	members []member
}

type member struct {
	inf    cache.SharedIndexInformer
	reg    cache.ResourceEventHandlerRegistration
	health *Health
}

// NewSet returns an empty Set that reports changes to changed and asks for
// a List every nudge while an informer fails.
func NewSet(changed func(), nudge time.Duration) *Set {
	return &Set{changed: changed, nudge: nudge}
}

func (s *Set) notify() {
	if s.synced.Load() {
		s.changed()
	}
}

// A Resource is what one informer of a Set lists and watches.
type Resource struct {
	// Client is the client that List and Watch use (see Health.ListWatch).
	Client any
	// Object is an empty object of the resource's type.
	Object runtime.Object
	List   func(context.Context, metav1.ListOptions) (runtime.Object, error)
	Watch  func(context.Context, metav1.ListOptions) (watch.Interface, error)
	// Transform trims what the cache keeps.
	Transform cache.TransformFunc
	// Changed reports whether an update is a change to the source (a relist
	// delivers unchanged objects as updates).
	Changed func(old, new any) bool
}

// Add adds an informer of r and returns its cache and its health.
func (s *Set) Add(r Resource) (cache.Store, *Health, error) {
	h := &Health{}
	inf := cache.NewSharedIndexInformer(h.ListWatch(r.Client, r.List, r.Watch), r.Object, 0, cache.Indexers{})
	if err := inf.SetTransform(r.Transform); err != nil {
		return nil, nil, err
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.notify() },
		UpdateFunc: func(o, n any) {
			if r.Changed(o, n) {
				s.notify()
			}
		},
		DeleteFunc: func(any) { s.notify() },
	})
	if err != nil {
		return nil, nil, err
	}
	s.members = append(s.members, member{inf, reg, h})
	return inf.GetStore(), h, nil
}

// Run runs the informers until ctx ends. Once all have synced it calls
// publish (a source then reads their caches) and changed; the unpublish
// that publish returns runs as ctx ends, before the informers stop. Run
// returns once every goroutine it started has ended.
func (s *Set) Run(ctx context.Context, publish func() (unpublish func())) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, m := range s.members {
		wg.Go(func() { m.inf.RunWithContext(ctx) })
	}
	for _, m := range s.members {
		select {
		case <-ctx.Done():
			return
		case <-m.reg.HasSyncedChecker().Done():
		}
	}
	unpublish := publish()
	defer unpublish()
	s.synced.Store(true)
	s.changed()
	s.nudgeWhileFailing(ctx, clock.RealClock{})
}

// nudgeWhileFailing calls changed every nudge while an informer is not
// fresh, and once more when all are fresh again, until ctx ends: while an
// informer fails, the source's List asks the API server, and these Lists
// show the error and then the recovery, without waiting for the reflector.
func (s *Set) nudgeWhileFailing(ctx context.Context, clk clock.WithTicker) {
	t := clk.NewTicker(s.nudge)
	defer t.Stop()
	was := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		fresh := true
		for _, m := range s.members {
			fresh = fresh && m.health.Fresh()
		}
		if !fresh || !was {
			s.changed()
		}
		was = fresh
	}
}
