package controllerruntime

import (
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// queue is the work queue of a Controller: workqueue's contract (an item is
// handed to one worker at a time; an item added while it is processed is
// handed out again after Done; an item queued twice is queued once), with a
// way to drop a cluster's items.
type queue interface {
	add(r Request)
	addAfter(r Request, d time.Duration)
	addRateLimited(r Request)
	forget(r Request)
	// get blocks until an item is ready, or returns false once shutDown was
	// called.
	get() (Request, bool)
	done(r Request)
	dropCluster(name string)
	shutDown()
}

// fairQueue is a queue that is fair across clusters: one FIFO per cluster,
// served round-robin. get hands out the head of the next cluster in the ring
// that has work, and puts that cluster back at the ring's end if it has more.
//
// The bound: with N clusters that have queued work, a request that reaches
// the head of its own cluster's FIFO is handed out after at most N-1 other
// requests, however many the other clusters have queued. A quiet cluster's
// request (alone in its FIFO) thus waits for at most one request of each
// other busy cluster: N-1 reconciles divided by the number of workers. A
// flooded cluster only delays its own requests.
//
// A cluster has at most maxPerCluster requests handed out at once; one
// that has that many is skipped until one is done. With fewer than the
// number of workers, a cluster whose reconciles hang (an unreachable API
// server) cannot take every worker.
type fairQueue struct {
	limiter       workqueue.TypedRateLimiter[Request]
	clock         clock.WithDelayedExecution
	maxPerCluster int

	mu         sync.Mutex // protects every field below; held for map and slice operations only, never while calling the clock or the limiter
	cond       *sync.Cond // on mu: signalled when an item becomes ready or the queue shuts down
	clusters   map[string][]Request
	ring       []string              // clusters with queued items, in the order they are served; each at most once
	dirty      map[Request]struct{}  // queued, or added again while processing
	processing map[Request]struct{}  // handed out and not yet done
	inflight   map[string]int        // per cluster: how many of processing
	timers     map[*delayed]struct{} // pending addAfter timers, stopped by shutDown
	shutdown   bool
}

// delayed is one pending addAfter.
type delayed struct {
	timer clock.Timer // nil until registered
	fired bool
}

func newFairQueue(limiter workqueue.TypedRateLimiter[Request], clk clock.WithDelayedExecution, maxPerCluster int) *fairQueue {
	q := &fairQueue{
		limiter:       limiter,
		clock:         clk,
		maxPerCluster: max(1, maxPerCluster),
		inflight:      make(map[string]int),
		clusters:      make(map[string][]Request),
		dirty:         make(map[Request]struct{}),
		processing:    make(map[Request]struct{}),
		timers:        make(map[*delayed]struct{}),
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *fairQueue) add(r Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	if _, ok := q.dirty[r]; ok {
		return
	}
	q.dirty[r] = struct{}{}
	if _, ok := q.processing[r]; ok {
		return // done queues it again
	}
	q.pushLocked(r)
}

func (q *fairQueue) pushLocked(r Request) {
	items := q.clusters[r.ClusterName]
	if len(items) == 0 {
		q.ring = append(q.ring, r.ClusterName)
	}
	q.clusters[r.ClusterName] = append(items, r)
	q.cond.Signal()
}

func (q *fairQueue) get() (Request, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := -1
	for {
		if q.shutdown {
			return Request{}, false
		}
		if i = q.nextLocked(); i >= 0 {
			break
		}
		q.cond.Wait()
	}
	name := q.ring[i]
	q.ring = slices.Delete(q.ring, i, i+1)
	items := q.clusters[name]
	r := items[0]
	items[0] = Request{}
	if items = items[1:]; len(items) > 0 {
		q.clusters[name] = items
		q.ring = append(q.ring, name) // to the back: round-robin
	} else {
		delete(q.clusters, name)
	}
	delete(q.dirty, r)
	q.processing[r] = struct{}{}
	q.inflight[name]++
	return r, true
}

// nextLocked returns the index in ring of the first cluster below its
// in-flight limit, or -1.
func (q *fairQueue) nextLocked() int {
	for i, name := range q.ring {
		if q.inflight[name] < q.maxPerCluster {
			return i
		}
	}
	return -1
}

func (q *fairQueue) done(r Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.processing[r]; !ok {
		return
	}
	delete(q.processing, r)
	if q.inflight[r.ClusterName]--; q.inflight[r.ClusterName] <= 0 {
		delete(q.inflight, r.ClusterName)
	}
	q.cond.Signal() // the cluster may be below its limit again
	if _, ok := q.dirty[r]; ok && !q.shutdown {
		q.pushLocked(r)
	}
}

func (q *fairQueue) addAfter(r Request, d time.Duration) {
	if d <= 0 {
		q.add(r)
		return
	}
	t := &delayed{}
	// The clock is called with mu not held: a fake clock runs the function
	// in Step, under its own lock.
	timer := q.clock.AfterFunc(d, func() { q.fire(t, r) })
	q.mu.Lock()
	if q.shutdown || t.fired {
		q.mu.Unlock()
		timer.Stop()
		return
	}
	t.timer = timer
	q.timers[t] = struct{}{}
	q.mu.Unlock()
}

func (q *fairQueue) fire(t *delayed, r Request) {
	q.mu.Lock()
	t.fired = true
	delete(q.timers, t)
	q.mu.Unlock()
	q.add(r)
}

func (q *fairQueue) addRateLimited(r Request) { q.addAfter(r, q.limiter.When(r)) }

func (q *fairQueue) forget(r Request) { q.limiter.Forget(r) }

// dropCluster forgets the queued items of a cluster that has gone, and the
// re-adds of its items in progress. Its delayed items still arrive; the
// Controller drops those of a cluster that is not in the Registry.
func (q *fairQueue) dropCluster(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range q.clusters[name] {
		delete(q.dirty, r)
	}
	delete(q.clusters, name)
	for i, n := range q.ring {
		if n == name {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			break
		}
	}
	for r := range q.processing {
		if r.ClusterName == name {
			delete(q.dirty, r)
		}
	}
}

func (q *fairQueue) shutDown() {
	q.mu.Lock()
	q.shutdown = true
	timers := make([]clock.Timer, 0, len(q.timers))
	for t := range q.timers {
		timers = append(timers, t.timer)
	}
	clear(q.timers)
	q.cond.Broadcast()
	q.mu.Unlock()
	for _, t := range timers {
		t.Stop()
	}
}

// len returns the number of queued items, for tests.
func (q *fairQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, items := range q.clusters {
		n += len(items)
	}
	return n
}

// fifoQueue is client-go's rate-limiting work queue, one FIFO for every
// cluster: what a single-cluster controller uses. WithSharedFIFO selects it,
// to compare.
type fifoQueue struct {
	q workqueue.TypedRateLimitingInterface[Request]
}

func newFIFOQueue(limiter workqueue.TypedRateLimiter[Request], clk clock.WithTicker) *fifoQueue {
	return &fifoQueue{q: workqueue.NewTypedRateLimitingQueueWithConfig(limiter,
		workqueue.TypedRateLimitingQueueConfig[Request]{Clock: clk})}
}

func (f *fifoQueue) add(r Request)                       { f.q.Add(r) }
func (f *fifoQueue) addAfter(r Request, d time.Duration) { f.q.AddAfter(r, d) }
func (f *fifoQueue) addRateLimited(r Request)            { f.q.AddRateLimited(r) }
func (f *fifoQueue) forget(r Request)                    { f.q.Forget(r) }
func (f *fifoQueue) done(r Request)                      { f.q.Done(r) }
func (f *fifoQueue) dropCluster(string)                  {}
func (f *fifoQueue) shutDown()                           { f.q.ShutDown() }

func (f *fifoQueue) get() (Request, bool) {
	r, shutdown := f.q.Get()
	return r, !shutdown
}
