package shard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// ErrNotOwned is returned by a wrapped Builder asked to build a cluster that
// this replica may not build now: another replica owns it, a peer has not
// released it yet, or this replica lost its Lease or is stopping.
var ErrNotOwned = errors.New("not owned by this replica")

// A Member is one replica's part in a group of replicas that share the
// clusters of a source. Each replica renews a Lease of its own in the hub
// cluster, watches its peers' Leases, and owns the clusters that weighted
// rendezvous hashing gives it among the live replicas. Source filters a
// ClusterSource down to the clusters that this replica may serve, and Wrap
// gates a Builder so that no client is built outside them.
//
// # The guarantee
//
// At no moment do two replicas hold a client of one cluster (from the start
// of its Build to the end of its Release). A replica builds a cluster that
// its view newly gives it only once every live replica of that view has
// written, in its Lease, that it has settled on the view (released every
// client the view does not give it). A replica that cannot renew its Lease
// for RenewDeadline stops serving every cluster, cancels its builds, and,
// if its clients are still held (LeaseDuration-RenewDeadline)/2 later,
// releases them itself; its peers take its clusters only once they have not
// seen its Lease change for LeaseDuration and a fresh read confirms it.
// A replica that stops cleanly releases its clients, then deletes its Lease,
// so its peers take over at once.
//
// Hub writes grow with the replicas, not with the clusters: a replica writes
// its Lease every RetryPeriod and when its view or its settlement changes,
// and watches its peers' Leases with one watch.
//
// # Clock assumptions
//
// As with client-go's leader election, a replica never compares its clock
// with another's: a peer's Lease is timed from when this replica saw it
// change. The guarantee assumes that the replicas' clocks run at about the
// same rate (so that RenewDeadline on one replica ends before LeaseDuration
// on another, counted from later) and that a replica is not paused (a
// stopped process, a frozen VM) for longer than LeaseDuration-RenewDeadline
// between its checks. It also needs the hub: while the hub is unreachable,
// every replica that cannot renew stops serving, and no cluster changes
// hands.
type Member struct {
	cfg      Config
	log      logr.Logger
	name     string // of the Lease
	instance string // random: tells another process of this identity apart

	// Only the goroutine that renews the Lease touches these.
	foreignVersion string
	foreignSince   time.Time

	wake   chan struct{} // buffered 1: asks for a Lease write now
	notify chan struct{} // buffered 1: asks the observer loop to deliver

	mu      sync.Mutex // protects the fields below
	running bool       // Run was called
	joined  bool       // the Lease is written and the peers listed
	written bool       // the Lease is written
	// peersListed: this replica has seen its own Lease, as this process
	// wrote it, among the Leases it lists and watches. The watch is ordered,
	// so every peer that wrote its Lease before is known; until then the
	// view is not, and the replica builds nothing.
	peersListed bool
	lost        bool // RenewDeadline passed without a renewal
	term        int  // times lost: with instance, this replica's incarnation
	leaving     bool // Run's context ended
	peers       map[string]*peer
	view        View
	prevView    View
	// published is the settled view ID of the last Lease write that
	// succeeded; written the settled ID of every write, even one whose
	// answer was lost.
	published   string
	wasClear    bool // clearLocked, when the view was last recomputed
	lastRenew   time.Time
	regainedAt  time.Time // the start of the write that renewed the Lease after the last loss
	held        map[string][]*holding
	builds      map[*holding]context.CancelFunc
	watchers    map[int]func()
	nextWatcher int
	list        listing // of the last List
	handoffs    []Handoff
	counts      Counts
	heldEmptied chan struct{} // closed when held becomes empty while leaving
	single      bool
}

// peer is what this replica knows of another.
type peer struct {
	record
	seen time.Time // when this replica saw its Lease change
	dead bool      // its Lease expired and a fresh read confirmed it
}

// holding is one client of a cluster that this replica holds, from the
// start of its Build to the end of its Release.
type holding struct {
	cluster   string
	release   func() // nil while building
	releasing bool
	forced    bool // released by the Member after losing its Lease
}

// New returns the Member of a replica. It starts nothing: Run takes part in
// the group. With a nil Config.Client it is a single replica that owns every
// cluster; Source and Wrap then change nothing.
func New(cfg Config) (*Member, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	m := &Member{
		cfg:      cfg,
		log:      cfg.Logger.WithValues("group", cfg.Group, "replica", cfg.Identity),
		name:     leaseName(cfg.Group, cfg.Identity),
		instance: hex.EncodeToString(b[:]),
		wake:     make(chan struct{}, 1),
		notify:   make(chan struct{}, 1),
		peers:    map[string]*peer{},
		held:     map[string][]*holding{},
		builds:   map[*holding]context.CancelFunc{},
		watchers: map[int]func(){},
		single:   cfg.Client == nil,
	}
	m.view = NewView(m.selfLocked())
	if m.single {
		m.joined = true
		m.published = m.view.ID
	}
	return m, nil
}

// Identity returns this replica's identity.
func (m *Member) Identity() string { return m.cfg.Identity }

// Run takes part in the group until ctx ends: it writes and renews this
// replica's Lease, watches the peers' Leases and recomputes the view. When
// ctx ends it stops serving, waits for every held client to be released (by
// the Syncer, which the same ctx usually stops) for up to LeaseDuration,
// releases the rest itself, deletes its Lease and returns nil. It returns an
// error only if it was already running. A single replica (no Client) just
// waits for ctx.
func (m *Member) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("shard: Member.Run called twice")
	}
	m.running = true
	m.mu.Unlock()
	if m.single {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// The peers' watch and the observer's deliveries end after the Lease is
	// gone, so that the last view and handoffs are seen.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	wg.Go(func() { m.deliver(bg) })
	wg.Go(func() { m.watchPeers(bg) })
	m.loop(ctx, &wg)
	return nil
}

// loop renews the Lease every RetryPeriod and on request, watches the renew
// deadline, and leaves when ctx ends.
func (m *Member) loop(ctx context.Context, wg *sync.WaitGroup) {
	c := m.cfg
	tick := c.Clock.NewTicker(c.RetryPeriod)
	defer tick.Stop()
	deadline := c.Clock.NewTimer(c.RenewDeadline)
	defer deadline.Stop()
	var force, leave clock.Timer
	defer func() {
		for _, t := range []clock.Timer{force, leave} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	timerC := func(t clock.Timer) <-chan time.Time {
		if t == nil {
			return nil
		}
		return t.C()
	}
	var (
		lastStart time.Time // of the last write that succeeded
		last      *coordv1.Lease
		renewing  bool
		again     bool // another write was asked for during this one
		renewDone = make(chan renewResult, 1)
		done      = ctx.Done()
		emptied   <-chan struct{}
	)
	renew := func() {
		if renewing {
			again = true
			return
		}
		renewing, again = true, false
		start := c.Clock.Now()
		d := m.desired()
		prev := last
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.RenewDeadline)
			defer cancel()
			got, err := m.writeLease(rctx, prev, d)
			if err == nil {
				m.checkPeers(rctx)
			} else {
				// client-go returns an empty Lease beside an error; the
				// stored one is unknown: read it afresh next time.
				got = nil
			}
			renewDone <- renewResult{got, err, start, d}
		})
	}
	renew()
	for {
		select {
		case <-tick.C():
			renew()
		case <-m.wake:
			renew()
		case r := <-renewDone:
			renewing = false
			last = r.lease
			if r.err != nil {
				m.log.Info("Could not renew the Lease", "lease", m.name, "err", r.err.Error())
			} else {
				lastStart = r.start
				deadline.Reset(c.RenewDeadline - c.Clock.Since(r.start))
				if m.renewed(r.start, r.d) && force != nil {
					force.Stop()
					force = nil
				}
			}
			if again {
				renew()
			}
		case <-deadline.C():
			// A fake clock's timer may fire just before a Reset: check.
			if c.Clock.Since(lastStart) >= c.RenewDeadline && m.lose() {
				force = c.Clock.NewTimer((c.LeaseDuration - c.RenewDeadline) / 2)
			}
		case <-timerC(force):
			force = nil
			wg.Go(func() { m.forceRelease("this replica could not renew its Lease") })
		case <-done:
			done = nil
			emptied = m.leave()
			leave = c.Clock.NewTimer(c.LeaseDuration)
		case <-timerC(leave):
			leave = nil
			wg.Go(func() { m.forceRelease("this replica is stopping and its clients were not released in time") })
		case <-emptied:
			for renewing {
				if r := <-renewDone; r.err == nil {
					last = r.lease
				}
				renewing = false
			}
			m.deleteLease(ctx, last)
			return
		}
	}
}

type renewResult struct {
	lease *coordv1.Lease
	err   error
	start time.Time
	d     desired
}

// desired returns what the next Lease write says: the view, and the view it
// may say it has settled on (the current one if every held client belongs
// to it, else the one it last said).
func (m *Member) desired() desired {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := desired{settled: m.published, view: m.view.ID, replicas: m.view.String(), term: m.term}
	if m.settledLocked(m.view) {
		d.settled = m.view.ID
	}
	return d
}

// settledLocked reports whether every client this replica holds is of a
// cluster that v gives it.
func (m *Member) settledLocked(v View) bool {
	for name := range m.held {
		if v.Owner(name) != m.cfg.Identity {
			return false
		}
	}
	return true
}

// renewed records a successful write begun at start; it reports whether the
// replica serves again after losing its Lease.
func (m *Member) renewed(start time.Time, d desired) (regained bool) {
	m.mu.Lock()
	m.lastRenew = start
	m.published = d.settled
	m.counts.Renewals++
	regained = m.lost
	if regained {
		m.regainedAt = start
	}
	first := !m.joined && m.peersListed
	m.lost = false
	m.written = true
	m.joined = m.peersListed
	notify := m.recomputeLocked()
	m.mu.Unlock()
	if regained {
		m.log.Info("Renewed the Lease again: serving", "lease", m.name)
	}
	if regained || first || notify {
		m.changed()
	}
	return regained
}

// lose stops serving after the renew deadline passed; it reports whether
// the replica was serving.
func (m *Member) lose() bool {
	m.mu.Lock()
	if m.lost || !m.joined {
		m.mu.Unlock()
		return false
	}
	m.lost = true
	m.counts.LeaseLosses++
	// A new incarnation: every view this replica computes from now on has
	// a new ID, so no settlement that a peer wrote before counts again.
	m.term++
	for _, cancel := range m.builds {
		cancel()
	}
	m.recomputeLocked()
	m.mu.Unlock()
	m.log.Info("Could not renew the Lease before the renew deadline: serving no cluster",
		"lease", m.name, "renewDeadline", m.cfg.RenewDeadline)
	m.changed()
	return true
}

// leave stops serving because Run's context ended. The channel it returns
// is closed once no client is held.
func (m *Member) leave() <-chan struct{} {
	m.mu.Lock()
	m.leaving = true
	for _, cancel := range m.builds {
		cancel()
	}
	m.heldEmptied = make(chan struct{})
	if len(m.held) == 0 {
		close(m.heldEmptied)
	}
	ch := m.heldEmptied
	m.mu.Unlock()
	m.log.Info("Stopping: releasing every cluster, then deleting the Lease", "lease", m.name)
	m.changed()
	return ch
}

// forceRelease releases every client still held, for the reason given;
// the Syncer's later Release of each is then a no-op.
func (m *Member) forceRelease(reason string) {
	m.mu.Lock()
	if !m.lost && !m.leaving {
		m.mu.Unlock()
		return
	}
	var todo []*holding
	for _, hs := range m.held {
		for _, h := range hs {
			if !h.releasing && !h.forced {
				h.forced = true
				if h.release != nil {
					h.releasing = true
					todo = append(todo, h)
				}
			}
		}
	}
	m.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	m.log.Info("Releasing clients that are still held", "clients", len(todo), "reason", reason)
	for _, h := range todo {
		h.release()
		m.drop(h)
	}
}

// deleteLease deletes this replica's Lease, so that its peers take its
// clusters at once.
func (m *Member) deleteLease(ctx context.Context, last *coordv1.Lease) {
	if last == nil {
		return // never written, or its state unknown: it expires
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.RenewDeadline)
	defer cancel()
	// Only this process's Lease: not one that another took since.
	err := m.cfg.Client.Leases(m.cfg.Namespace).Delete(rctx, m.name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &last.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		m.log.Info("Could not delete the Lease; the peers take over when it expires", "lease", m.name, "err", err.Error())
		return
	}
	m.log.Info("Deleted the Lease", "lease", m.name)
}

// changed tells every Source watcher that the listing may have changed, and
// the observer that the status did. No lock is held.
func (m *Member) changed() {
	m.mu.Lock()
	fs := make([]func(), 0, len(m.watchers))
	for _, f := range m.watchers {
		fs = append(fs, f)
	}
	m.mu.Unlock()
	for _, f := range fs {
		f()
	}
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// askWrite asks the loop for a Lease write soon.
func (m *Member) askWrite() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// recomputeLocked recomputes the view from the live peers. It reports
// whether the listing may have changed: the view changed, or every peer has
// now settled on it.
func (m *Member) recomputeLocked() bool {
	replicas := []Replica{m.selfLocked()}
	for _, p := range m.peers {
		if !p.dead {
			replicas = append(replicas, Replica{p.identity, p.weight, p.incarnation()})
		}
	}
	v := NewView(replicas...)
	notify := false
	if v.ID != m.view.ID {
		m.prevView, m.view = m.view, v
		m.counts.ViewChanges++
		m.log.Info("View changed", "view", v.String(), "id", v.ID, "from", m.prevView.String())
		notify = true
	}
	// Publish the settlement now, once the Lease is this process's: before
	// that, each periodic attempt carries it, and asking at every peer's
	// renewal would only read again a Lease that another process holds.
	if m.written && m.published != v.ID && m.settledLocked(v) {
		m.askWrite()
	}
	// Clear again: the clusters that waited for a peer may be built now.
	clear := m.clearLocked()
	notify = notify || clear && !m.wasClear
	m.wasClear = clear
	return notify
}

// selfLocked is this replica in its views.
func (m *Member) selfLocked() Replica {
	if m.single {
		return Replica{Identity: m.cfg.Identity, Weight: m.cfg.Weight}
	}
	return Replica{m.cfg.Identity, m.cfg.Weight, m.instance + "/" + strconv.Itoa(m.term)}
}

// clearLocked reports whether this replica may build any cluster that its
// view gives it: it and every live peer of the view have settled on it.
func (m *Member) clearLocked() bool {
	if !m.servingLocked() || m.published != m.view.ID {
		return false
	}
	for _, r := range m.view.Replicas {
		if r.Identity == m.cfg.Identity {
			continue
		}
		if p := m.peers[r.Identity]; p == nil || p.settled != m.view.ID {
			return false
		}
	}
	return true
}

func (m *Member) servingLocked() bool { return m.joined && !m.lost && !m.leaving }

// allowedLocked reports whether this replica may hold a client of cluster.
func (m *Member) allowedLocked(cluster string) bool {
	if !m.servingLocked() || m.view.Owner(cluster) != m.cfg.Identity {
		return false
	}
	return len(m.held[cluster]) > 0 || m.clearLocked()
}

// acquire records a build of cluster about to start, if this replica may
// build it; the context it returns ends when the replica stops serving.
func (m *Member) acquire(ctx context.Context, cluster string) (*holding, context.Context, context.CancelFunc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.allowedLocked(cluster) {
		return nil, nil, nil, m.notOwnedLocked(cluster)
	}
	h := &holding{cluster: cluster}
	m.held[cluster] = append(m.held[cluster], h)
	bctx, cancel := context.WithCancel(ctx)
	m.builds[h] = cancel
	return h, bctx, cancel, nil
}

func (m *Member) notOwnedLocked(cluster string) error {
	why := ""
	switch owner := m.view.Owner(cluster); {
	case m.lost:
		why = "it lost its Lease"
	case m.leaving:
		why = "it is stopping"
	case !m.joined:
		why = "it has not joined its group yet"
	case owner != m.cfg.Identity:
		why = fmt.Sprintf("replica %q owns it", owner)
	default:
		why = fmt.Sprintf("waiting for replicas %v to release it", m.waitingForLocked())
	}
	return fmt.Errorf("cluster %q: %w %q: %s", cluster, ErrNotOwned, m.cfg.Identity, why)
}

// built records the end of h's build: it keeps the client (release frees
// it) if the replica may still hold it, and reports whether it does.
func (m *Member) built(h *holding, release func()) bool {
	m.mu.Lock()
	delete(m.builds, h)
	if h.forced || !m.allowedLockedHeld(h.cluster) {
		m.mu.Unlock()
		return false
	}
	h.release = release
	m.mu.Unlock()
	return true
}

// allowedLockedHeld is allowedLocked for a cluster of which h is held.
func (m *Member) allowedLockedHeld(cluster string) bool {
	return m.servingLocked() && m.view.Owner(cluster) == m.cfg.Identity
}

// drop forgets h: its build failed or its client was released.
func (m *Member) drop(h *holding) {
	m.mu.Lock()
	delete(m.builds, h)
	hs := slices.DeleteFunc(m.held[h.cluster], func(x *holding) bool { return x == h })
	if len(hs) == 0 {
		delete(m.held, h.cluster)
	} else {
		m.held[h.cluster] = hs
	}
	if m.published != m.view.ID && m.settledLocked(m.view) {
		m.askWrite()
	}
	if m.leaving && len(m.held) == 0 && m.heldEmptied != nil && !isClosed(m.heldEmptied) {
		close(m.heldEmptied)
	}
	m.mu.Unlock()
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitingForLocked lists the live peers that have not settled on the view.
func (m *Member) waitingForLocked() []string {
	var ids []string
	for _, r := range m.view.Replicas {
		if r.Identity == m.cfg.Identity {
			if m.published != m.view.ID {
				ids = append(ids, r.Identity)
			}
			continue
		}
		if p := m.peers[r.Identity]; p == nil || p.settled != m.view.ID {
			ids = append(ids, r.Identity)
		}
	}
	return ids
}
