package clusterregistry

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// Registry holds the clients of the current clusters, their errors, the
// default cluster and a generation number. Its Syncer keeps it in step with a
// ClusterSource; a Registry is obtained from Syncer.Registry.
//
// Every method is safe for concurrent use and never waits on I/O or on a
// sync: the state is immutable, and lookups load it with one atomic read.
//
// A client returned by Get or Default may be released to its Builder once a
// later sync replaces or removes its cluster; that is fine for a request that
// takes a moment. A caller that keeps a client for long (a watch, a log
// stream, an exec session) takes a Lease instead.
//
// Once its Syncer has stopped, every lookup returns an error wrapping
// ErrStopped. The zero Registry is not usable: get one from Syncer.Registry.
type Registry[T any] struct {
	// cur is the published state. Lookups (Get, Default, Snapshot, Health)
	// load it with no lock: it is never changed once published, and an atomic
	// load costs a fraction of RLock, an atomic add on one cache line that
	// every reading core writes.
	cur atomic.Pointer[state[T]]

	// mu orders publishing with leasing. A publish stores cur under the write
	// lock; a lease loads cur and counts itself on the handle under the read
	// lock. So a lease is counted before any publish that retires its handle
	// returns, and the Syncer can wait for a retired handle's count to fall
	// to zero. Plain lookups never take it.
	mu sync.RWMutex

	// eventsMu orders publishing with subscribing and with probe results: a
	// state is published and its events queued under it, a new subscriber's
	// replay is taken under it, and health is stored under it. Never held by
	// a lookup.
	eventsMu    sync.Mutex
	subscribers map[*Subscription]struct{} // protected by eventsMu
}

func newRegistry[T any]() *Registry[T] {
	r := &Registry[T]{}
	r.cur.Store(&state[T]{})
	return r
}

// load returns the current state, which the caller may use with no lock held.
func (r *Registry[T]) load() *state[T] { return r.cur.Load() }

// publish swaps in next and queues its events for the subscribers. A client
// that replaces another starts with its predecessor's health, so that the
// cluster's health reads the same until the new client is probed. It returns
// how long the write lock was held, on the wall clock: an injected clock could
// take locks of its own.
func (r *Registry[T]) publish(next *state[T], events []Event, replaced []namedHandle[T]) time.Duration {
	r.eventsMu.Lock()
	defer r.eventsMu.Unlock()
	return r.publishLocked(next, events, replaced)
}

// publishLocked is publish with r.eventsMu held.
func (r *Registry[T]) publishLocked(next *state[T], events []Event, replaced []namedHandle[T]) time.Duration {
	// Under eventsMu no probe result lands, so the inherited health is the
	// latest.
	for _, old := range replaced {
		if m := next.members[old.name]; m != nil && m.h != nil && m.h != old.h {
			m.h.health.Store(old.h.health.Load())
		}
	}
	r.mu.Lock()
	start := time.Now()
	r.cur.Store(next)
	held := time.Since(start)
	r.mu.Unlock()
	r.emitLocked(next, events)
	return held
}

// stop publishes the final, empty state with its events, and ends every
// subscription with ErrStopped once it has read them. A later Subscribe
// finds the final state stopped.
func (r *Registry[T]) stop(final *state[T], events []Event) {
	r.eventsMu.Lock()
	defer r.eventsMu.Unlock()
	r.publishLocked(final, events, nil)
	for sub := range r.subscribers {
		sub.end(ErrStopped)
	}
}

// leaseServing leases the client of every cluster that has one, as Lease
// does, and returns the names and handles in name order.
func (r *Registry[T]) leaseServing() []namedHandle[T] {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []namedHandle[T]
	for _, m := range r.load().sorted {
		if m.h != nil {
			m.h.leases.Add(1)
			out = append(out, namedHandle[T]{m.name, m.h})
		}
	}
	return out
}

// Snapshot returns a consistent read-only view of the current state. It costs
// O(1): the view shares the state, which no later sync changes.
func (r *Registry[T]) Snapshot() Snapshot[T] { return Snapshot[T]{s: r.load()} }

// Get returns the client of the cluster called name. For a name the Registry
// does not know, the error wraps ErrClusterNotFound. For a known cluster that
// has no working client, the error is its *ClusterError. A cluster whose
// latest rebuild failed still returns its last good client; Snapshot's
// Cluster tells about the failure.
func (r *Registry[T]) Get(name string) (T, error) { return r.load().get(name) }

// Default returns the client of the default cluster. See Snapshot.DefaultName
// for the rules that pick it; when there is none, the error wraps
// ErrNoDefaultCluster.
func (r *Registry[T]) Default() (T, error) { return r.load().getDefault() }

// Lease returns the client of the cluster called name and holds it: a sync
// that replaces or removes the cluster does not release the client to its
// Builder until every lease on it is released, or until the drain timeout
// (WithDrainTimeout) has passed. Errors are those of Get, and the Lease is nil
// with them. The caller must call Release exactly once.
func (r *Registry[T]) Lease(name string) (*Lease[T], error) {
	return r.lease(func(*state[T]) (string, error) { return name, nil })
}

// LeaseDefault leases the client of the default cluster, as Lease does.
func (r *Registry[T]) LeaseDefault() (*Lease[T], error) {
	return r.lease(func(s *state[T]) (string, error) { return s.resolveDefault() })
}

// lease leases the client of the cluster that pick names in the current
// state.
func (r *Registry[T]) lease(pick func(*state[T]) (string, error)) (*Lease[T], error) {
	r.mu.RLock()
	s := r.load()
	name, err := pick(s)
	var h *handle[T]
	if m := s.members[name]; err == nil && m != nil && m.h != nil {
		// Counted under the read lock: see mu.
		h = m.h
		h.leases.Add(1)
	}
	r.mu.RUnlock()

	if err != nil {
		return nil, err
	}
	if h == nil {
		_, err := s.get(name)
		return nil, err
	}
	return &Lease[T]{name: name, h: h}, nil
}

// A Lease holds one cluster's client so that a sync does not release it while
// it is in use. Leases come from Registry.Lease and Registry.LeaseDefault; a
// Lease is safe for concurrent use.
type Lease[T any] struct {
	name     string
	h        *handle[T]
	released atomic.Bool
}

// Name returns the name of the leased cluster.
func (l *Lease[T]) Name() string { return l.name }

// Client returns the leased client. It stays valid until Release, or until
// the drain timeout has passed after a sync replaced or removed the cluster.
func (l *Lease[T]) Client() T { return l.h.client }

// Release returns the lease. If a sync has replaced or removed the cluster
// and this was its last lease, the client is released to its Builder in the
// calling goroutine. Calls after the first do nothing.
func (l *Lease[T]) Release() {
	if l.released.CompareAndSwap(false, true) {
		l.h.unlease()
	}
}

// handle is one built client and the leases on it. Several states share a
// handle until a sync replaces it.
type handle[T any] struct {
	client T
	description
	builtAt    time.Time
	generation uint64 // the generation that first published the client

	health atomic.Pointer[Health] // latest probe result; nil before the first

	leases    atomic.Int64
	retired   atomic.Bool
	onDrained func() // set by retire, before retired
	drainOnce sync.Once
}

func newHandle[T any](client T, d description, builtAt time.Time) *handle[T] {
	return &handle[T]{client: client, description: d, builtAt: builtAt}
}

// description is what a client was built from, or what failed to build.
type description struct {
	config   *rest.Config // private copy
	listed   *rest.Config // the source's own config it was copied from; see describes
	revision string
}

// describeListed returns the description of c, keeping a private copy of
// its config.
func describeListed(c Cluster) description {
	return description{config: restconfig.Copy(c.Config), listed: c.Config, revision: c.Revision}
}

// describes reports whether c needs no client beside one built from d. A
// source never changes what it listed, so the very config object that d was
// copied from needs no comparison: a source that lists unchanged configs
// again as the same objects (MemorySource, a SourceFunc over a kept listing)
// costs a pointer comparison per cluster.
func (d description) describes(c Cluster) bool {
	if c.Config != nil && c.Config == d.listed && c.Revision == d.revision {
		return true
	}
	return sameDescription(d.config, d.revision, c)
}

func (h *handle[T]) unlease() {
	if h.leases.Add(-1) == 0 && h.retired.Load() {
		h.drainOnce.Do(h.onDrained)
	}
}

// retire marks h as no longer published and calls drained once no lease is
// held on it: at once, or from the Release of the last lease. It reports
// whether drained has run.
func (h *handle[T]) retire(drained func()) bool {
	h.onDrained = drained
	h.retired.Store(true)
	if h.leases.Load() == 0 {
		h.drainOnce.Do(h.onDrained)
		return true
	}
	return false
}

// member is one cluster within one state. It is immutable.
type member[T any] struct {
	name      string
	isDefault bool
	labels    map[string]string
	revision  string     // revision of the latest listing
	h         *handle[T] // serving client; nil if none was ever built
	fail      *failure   // latest failure; nil when healthy

	// client is h.client, kept here too so that a lookup reads the member
	// alone: at thousands of clusters the handle is one more cache miss.
	client T
}

// failure is a cluster's latest failure and the description that failed, so
// that an unchanged description waits for its backoff.
type failure struct {
	err         *ClusterError
	description      // what failed to build; only its revision for an unusable one
	built       bool // a build was tried (rather than the description refused)
}

// state is everything a reader sees. It is never changed once published.
type state[T any] struct {
	generation  uint64
	members     map[string]*member[T]
	sorted      []*member[T] // the members, by name
	defaultName string       // "" when there is no default
	defaultErr  error        // why there is no (unambiguous) default
	sourceErr   error        // latest error of the source's List, nil after a good one
	syncedAt    time.Time
	stopped     bool // the Syncer has stopped; the state is empty
}

func (s *state[T]) get(name string) (T, error) {
	// The common case first, small enough to inline into Get.
	if m := s.members[name]; m != nil && m.h != nil {
		return m.client, nil
	}
	return s.getSlow(name)
}

func (s *state[T]) getSlow(name string) (T, error) {
	var zero T
	m, ok := s.members[name]
	switch {
	case !ok && s.stopped:
		return zero, fmt.Errorf("cluster %q: %w", name, ErrStopped)
	case !ok && name == s.defaultName:
		// Marked default in the listing, and published before its first
		// build ended.
		return zero, fmt.Errorf("default cluster %q: not built yet: %w", name, ErrClusterNotFound)
	case !ok:
		return zero, fmt.Errorf("cluster %q: %w", name, ErrClusterNotFound)
	case m.h == nil:
		return zero, m.fail.err
	}
	return m.client, nil
}

func (s *state[T]) resolveDefault() (string, error) {
	if s.defaultName == "" {
		if s.defaultErr != nil {
			return "", s.defaultErr
		}
		return "", ErrNoDefaultCluster
	}
	return s.defaultName, nil
}

func (s *state[T]) getDefault() (T, error) {
	name, err := s.resolveDefault()
	if err != nil {
		var zero T
		return zero, err
	}
	return s.get(name)
}

func (s *state[T]) clusterErr(name string) error {
	m, ok := s.members[name]
	if !ok {
		_, err := s.get(name)
		return err
	}
	if m.fail == nil {
		return nil
	}
	return m.fail.err
}
