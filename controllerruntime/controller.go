package controllerruntime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/fleet"
)

// Request is what a multi-cluster reconciler receives: the name of a cluster
// in the Registry and the key of an object in it.
type Request struct {
	ClusterName string
	reconcile.Request
}

// String returns "cluster/namespace/name".
func (r Request) String() string { return r.ClusterName + "/" + r.NamespacedName.String() }

// Reconciler reconciles the object of a Request in its cluster. It gets the
// cluster's client from the Registry: Registry.Get(req.ClusterName).
// ReconcileFunc adapts a function.
type Reconciler = reconcile.TypedReconciler[Request]

// ReconcileFunc adapts a function to a Reconciler.
type ReconcileFunc = reconcile.TypedFunc[Request]

// Controller is a controller-runtime Runnable that reconciles objects of
// every cluster of a Registry.
//
// For each cluster that has a client, it adds its watches (For, Watches) to
// the cluster's cache when the cluster arrives, and removes them when the
// cluster goes or its client is replaced. A replaced cluster is watched anew
// on its new client, whose informers list every object again: an event
// missed during the switch is made up by that list, and the Registry holds
// the old client until the new one serves, so the reconciler never finds the
// cluster missing.
//
// Requests of all clusters share one work queue that is fair across
// clusters: each cluster has its own FIFO (an object queued twice is queued
// once; a failed request is retried with a per-request backoff), and the
// workers serve the clusters round-robin. With N clusters that have work
// queued, a request at the head of its cluster's FIFO waits for at most N-1
// other requests, however many a flooded cluster has queued.
//
// One unreachable cluster delays no other: each cluster's watches are added
// by a goroutine of its own, and a reconciler that blocks on a cluster holds
// only one worker (use WithMaxConcurrentReconciles for more).
type Controller struct {
	name    string
	reg     *clusterregistry.Registry[*Cluster]
	rec     Reconciler
	opts    controllerOptions
	q       queue
	started atomic.Bool

	mu      sync.Mutex // protects engaged and hubKeys: held to read or change them, for nothing slow
	engaged map[string]*Cluster
	hubKeys map[types.NamespacedName]struct{}
}

type watch struct {
	obj   client.Object
	toReq func(ctx context.Context, cluster string, obj client.Object) []reconcile.Request
	preds []predicate.Predicate
}

type hubWatch struct {
	src   cache.Informers
	obj   client.Object
	preds []predicate.Predicate
}

// Defaults of the Controller options.
const (
	DefaultMaxConcurrentReconciles = 4
	DefaultReconcileTimeout        = time.Minute
)

type controllerOptions struct {
	timeout        time.Duration
	watches        []watch
	hub            []hubWatch
	workers        int
	limiter        workqueue.TypedRateLimiter[Request]
	clock          clock.WithTickerAndDelayedExecution
	log            logr.Logger
	leaderElection bool
	sharedFIFO     bool
	fleetInterval  time.Duration
}

// An Option configures a Controller.
type Option interface {
	apply(*controllerOptions)
}

type optionFunc func(*controllerOptions)

func (f optionFunc) apply(o *controllerOptions) { f(o) }

// For watches obj's kind in every cluster: each event (that every predicate
// accepts) queues the object's own key in its cluster.
func For(obj client.Object, preds ...predicate.Predicate) Option {
	return Watches(obj, func(_ context.Context, _ string, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
	}, preds...)
}

// Watches watches obj's kind in every cluster: each event (that every
// predicate accepts) queues the keys toRequests returns, in the object's
// cluster. toRequests runs on the cluster's informer goroutine, with no lock
// of the Controller held.
func Watches(obj client.Object, toRequests func(ctx context.Context, cluster string, obj client.Object) []reconcile.Request, preds ...predicate.Predicate) Option {
	return optionFunc(func(o *controllerOptions) {
		o.watches = append(o.watches, watch{obj: obj, toReq: toRequests, preds: preds})
	})
}

// Broadcasts watches obj's kind in src, a cache outside the Registry (the
// manager's own, on a hub cluster): each event (that every predicate
// accepts) queues the object's key in every cluster, and every cluster that
// arrives later gets the keys of all the objects src holds. It is how a
// controller keeps something of the hub in every cluster.
func Broadcasts(src cache.Informers, obj client.Object, preds ...predicate.Predicate) Option {
	return optionFunc(func(o *controllerOptions) {
		o.hub = append(o.hub, hubWatch{src: src, obj: obj, preds: preds})
	})
}

// WithMaxConcurrentReconciles sets the number of workers: reconciles that
// run at once, over all clusters. One cluster has at most half of them
// (at least one) at once, so that a cluster whose reconciles hang leaves
// the others workers. Default: DefaultMaxConcurrentReconciles.
func WithMaxConcurrentReconciles(n int) Option {
	return optionFunc(func(o *controllerOptions) { o.workers = n })
}

// WithReconcileTimeout bounds each reconcile: its ctx ends after d, so a
// request to an unreachable cluster ends and frees its worker. Default:
// DefaultReconcileTimeout. It must be positive.
func WithReconcileTimeout(d time.Duration) Option {
	return optionFunc(func(o *controllerOptions) { o.timeout = d })
}

// WithRateLimiter sets how long a request waits before it is retried after
// an error. Default: a per-request exponential backoff from 5ms to 1000s
// (client-go's, without the shared bucket of its default controller
// limiter, which would let one cluster's failures slow every other).
func WithRateLimiter(l workqueue.TypedRateLimiter[Request]) Option {
	return optionFunc(func(o *controllerOptions) { o.limiter = l })
}

// WithClock sets the clock of retries, RequeueAfter and the periodic check
// of the clusters; tests pass a fake one. Default: the real clock.
func WithClock(c clock.WithTickerAndDelayedExecution) Option {
	return optionFunc(func(o *controllerOptions) { o.clock = c })
}

// WithLogger sets the logger. Default: none.
func WithLogger(l logr.Logger) Option {
	return optionFunc(func(o *controllerOptions) { o.log = l })
}

// WithLeaderElection sets whether a manager runs the Controller on its
// leader only (true, the default) or on every replica (false: for replicas
// that each own a shard of the clusters, a Registry of their own).
func WithLeaderElection(need bool) Option {
	return optionFunc(func(o *controllerOptions) { o.leaderElection = need })
}

// WithSharedFIFO makes the Controller use one FIFO work queue for every
// cluster (client-go's rate-limiting queue), as a single-cluster controller
// does, instead of the fair queue. It is not fair: a flooded cluster delays
// every other. It exists to measure the difference.
func WithSharedFIFO() Option {
	return optionFunc(func(o *controllerOptions) { o.sharedFIFO = true })
}

var (
	errNoName         = errors.New("controller: empty name")
	errNoRegistry     = errors.New("controller: nil Registry")
	errNoReconciler   = errors.New("controller: nil Reconciler")
	errNoWatch        = errors.New("controller: no watch (For, Watches or Broadcasts)")
	errBadWatch       = errors.New("controller: a watch has a nil object or mapping")
	errWorkers        = errors.New("controller: MaxConcurrentReconciles must be positive")
	errNoClock        = errors.New("controller: nil clock")
	errTimeout        = errors.New("controller: the reconcile timeout must be positive")
	errNoLimiter      = errors.New("controller: nil rate limiter")
	errAlreadyStarted = errors.New("controller: already started")
)

// NewController returns a Controller named name (for logs) that calls rec
// for the objects that its options watch in every cluster of reg. It starts
// nothing: add it to a manager, or call Start.
func NewController(name string, reg *clusterregistry.Registry[*Cluster], rec Reconciler, opts ...Option) (*Controller, error) {
	o := controllerOptions{
		workers:        DefaultMaxConcurrentReconciles,
		timeout:        DefaultReconcileTimeout,
		limiter:        workqueue.NewTypedItemExponentialFailureRateLimiter[Request](5*time.Millisecond, 1000*time.Second),
		clock:          clock.RealClock{},
		log:            logr.Discard(),
		leaderElection: true,
		fleetInterval:  fleet.DefaultInterval,
	}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if err := o.validate(name, reg, rec); err != nil {
		return nil, err
	}
	c := &Controller{
		name: name, reg: reg, rec: rec, opts: o,
		engaged: make(map[string]*Cluster),
		hubKeys: make(map[types.NamespacedName]struct{}),
	}
	c.opts.log = o.log.WithValues("controller", name)
	if o.sharedFIFO {
		c.q = newFIFOQueue(o.limiter, o.clock)
	} else {
		c.q = newFairQueue(o.limiter, o.clock, o.workers/2)
	}
	return c, nil
}

func (o *controllerOptions) validate(name string, reg *clusterregistry.Registry[*Cluster], rec Reconciler) error {
	switch {
	case name == "":
		return errNoName
	case reg == nil:
		return errNoRegistry
	case rec == nil:
		return errNoReconciler
	case len(o.watches) == 0 && len(o.hub) == 0:
		return errNoWatch
	case o.workers <= 0:
		return errWorkers
	case o.timeout <= 0:
		return errTimeout
	case o.clock == nil:
		return errNoClock
	case o.limiter == nil:
		return errNoLimiter
	}
	for _, w := range o.watches {
		if w.obj == nil || w.toReq == nil {
			return errBadWatch
		}
	}
	for _, h := range o.hub {
		if h.obj == nil || h.src == nil {
			return errBadWatch
		}
	}
	return nil
}

// NeedLeaderElection reports whether a manager runs the Controller on its
// leader only (see WithLeaderElection).
func (c *Controller) NeedLeaderElection() bool { return c.opts.leaderElection }

// Start runs the Controller until ctx ends: it adds the Broadcasts watches,
// watches every cluster of the Registry as it comes and goes, and runs the
// workers. When ctx ends it removes every watch, stops the workers once
// their reconciles return, and returns nil. It returns an error if a
// Broadcasts source cannot watch its kind, or if the Controller was started
// before.
func (c *Controller) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errAlreadyStarted
	}
	defer c.q.shutDown()
	for _, h := range c.opts.hub {
		remove, err := c.watchHub(ctx, h)
		if err != nil {
			return err
		}
		defer remove()
	}
	f, err := fleet.New(c.reg, c.engage,
		fleet.WithClock(c.opts.clock), fleet.WithInterval(c.opts.fleetInterval),
		fleet.WithLogger(c.opts.log.V(1)))
	if err != nil {
		return err
	}
	var workers sync.WaitGroup
	// Each worker ends when the queue shuts down (below, once the Fleet has
	// stopped every cluster's watches); Start waits for them.
	for range c.opts.workers {
		workers.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	err = f.Start(ctx) // blocks until ctx ends, then stops every cluster's watches
	c.q.shutDown()
	workers.Wait()
	return err
}

// Enqueue queues a request, as a watch would. It is safe for concurrent use.
func (c *Controller) Enqueue(r Request) { c.q.add(r) }

// Engaged returns the clusters whose watches are in place, sorted.
func (c *Controller) Engaged() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.engaged))
}

// engage is the Fleet's work for one cluster: it adds the watches to the
// cluster's cache, queues the hub's keys for the cluster, and removes the
// watches when ctx ends (the cluster went, its client was replaced, or the
// Controller stops).
func (c *Controller) engage(ctx context.Context, name string, cl *Cluster) {
	log := c.opts.log.WithValues("cluster", name)
	var removes []func()
	defer func() {
		c.mu.Lock()
		if c.engaged[name] == cl {
			delete(c.engaged, name)
		}
		c.mu.Unlock()
		for _, remove := range removes {
			remove()
		}
		if _, err := c.reg.Get(name); errors.Is(err, clusterregistry.ErrClusterNotFound) {
			c.q.dropCluster(name)
		}
	}()
	for _, w := range c.opts.watches {
		// Not blocking until synced: events flow as the informer lists.
		// The kind's REST mapping may need discovery, bounded by the
		// Builder's DiscoveryTimeout on an unreachable cluster.
		inf, err := cl.GetCache().GetInformer(ctx, w.obj, cache.BlockUntilSynced(false))
		if err != nil {
			log.Error(err, "Cannot watch; retrying at the next check", "kind", fmt.Sprintf("%T", w.obj))
			return
		}
		reg, err := inf.AddEventHandler(c.handler(ctx, name, w))
		if err != nil {
			log.Error(err, "Cannot watch; retrying at the next check", "kind", fmt.Sprintf("%T", w.obj))
			return
		}
		removes = append(removes, func() { _ = inf.RemoveEventHandler(reg) })
	}
	c.mu.Lock()
	c.engaged[name] = cl
	keys := slices.Collect(maps.Keys(c.hubKeys))
	c.mu.Unlock()
	for _, k := range keys {
		c.q.add(Request{ClusterName: name, Request: reconcile.Request{NamespacedName: k}})
	}
	log.V(1).Info("Watching")
	<-ctx.Done()
}

// handler turns a cluster's informer events into requests of that cluster.
func (c *Controller) handler(ctx context.Context, cluster string, w watch) toolscache.ResourceEventHandler {
	queue := func(obj client.Object) {
		for _, r := range w.toReq(ctx, cluster, obj) {
			c.q.add(Request{ClusterName: cluster, Request: r})
		}
	}
	return eventHandler(w.preds, queue)
}

// watchHub adds a Broadcasts watch; the returned func removes it.
func (c *Controller) watchHub(ctx context.Context, h hubWatch) (func(), error) {
	inf, err := h.src.GetInformer(ctx, h.obj, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("controller %q: hub watch of %T: %w", c.name, h.obj, err)
	}
	reg, err := inf.AddEventHandler(eventHandler(h.preds, func(obj client.Object) {
		key := client.ObjectKeyFromObject(obj)
		c.mu.Lock()
		c.hubKeys[key] = struct{}{}
		clusters := slices.Collect(maps.Keys(c.engaged))
		c.mu.Unlock()
		for _, name := range clusters {
			c.q.add(Request{ClusterName: name, Request: reconcile.Request{NamespacedName: key}})
		}
	}))
	if err != nil {
		return nil, fmt.Errorf("controller %q: hub watch of %T: %w", c.name, h.obj, err)
	}
	return func() { _ = inf.RemoveEventHandler(reg) }, nil
}

// eventHandler calls queue with the object of each event that every
// predicate accepts; the object of a delete is the last known state.
func eventHandler(preds []predicate.Predicate, queue func(client.Object)) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			o, ok := obj.(client.Object)
			if !ok {
				return
			}
			for _, p := range preds {
				if !p.Create(event.CreateEvent{Object: o}) {
					return
				}
			}
			queue(o)
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(client.Object)
			n, ok2 := newObj.(client.Object)
			if !ok1 || !ok2 {
				return
			}
			for _, p := range preds {
				if !p.Update(event.UpdateEvent{ObjectOld: o, ObjectNew: n}) {
					return
				}
			}
			queue(n)
		},
		DeleteFunc: func(obj any) {
			unknown := false
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj, unknown = tomb.Obj, true
			}
			o, ok := obj.(client.Object)
			if !ok {
				return
			}
			for _, p := range preds {
				if !p.Delete(event.DeleteEvent{Object: o, DeleteStateUnknown: unknown}) {
					return
				}
			}
			queue(o)
		},
	}
}

// processNext hands one request to the reconciler; false once the queue has
// shut down.
func (c *Controller) processNext(ctx context.Context) bool {
	r, ok := c.q.get()
	if !ok {
		return false
	}
	defer c.q.done(r)
	if _, err := c.reg.Get(r.ClusterName); err != nil {
		if errors.Is(err, clusterregistry.ErrClusterNotFound) {
			c.q.forget(r) // the cluster went: nothing left to reconcile
			return true
		}
		c.q.addRateLimited(r) // no client yet (or a stopped Registry)
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	res, err := c.reconcile(rctx, r)
	cancel()
	switch {
	case errors.Is(err, ErrReleased):
		// The cluster left, or its client was replaced, during the
		// reconcile: the request is dropped at the next try if it left,
		// and reconciled with the new client otherwise. Not a failure.
		c.q.addRateLimited(r)
		c.opts.log.V(1).Info("The cluster's client was released during the reconcile; trying again",
			"cluster", r.ClusterName, "object", r.NamespacedName.String())
	case err != nil:
		if !errors.Is(err, reconcile.TerminalError(nil)) {
			c.q.addRateLimited(r)
		} else {
			c.q.forget(r)
		}
		c.opts.log.Error(err, "Reconcile failed", "cluster", r.ClusterName, "object", r.NamespacedName.String())
	case res.RequeueAfter > 0:
		c.q.forget(r)
		c.q.addAfter(r, res.RequeueAfter)
	case res.Requeue: //lint:ignore SA1019 honoured while controller-runtime has it
		c.q.addRateLimited(r)
	default:
		c.q.forget(r)
	}
	return true
}

// reconcile calls the reconciler, and turns a panic into an error that names
// the cluster.
func (c *Controller) reconcile(ctx context.Context, r Request) (res reconcile.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cluster %q: reconcile %s panicked: %v", r.ClusterName, r.NamespacedName, p)
		}
	}()
	return c.rec.Reconcile(ctx, r)
}

var (
	_ manager.Runnable               = (*Controller)(nil)
	_ manager.LeaderElectionRunnable = (*Controller)(nil)
)
