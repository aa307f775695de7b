package shard_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
)

const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// client is what the test's builder builds: one per build.
type client struct{ cluster, replica string }

// ledger records who holds a client of each cluster, and every moment two
// replicas did.
type ledger struct {
	mu         sync.Mutex
	holders    map[string]map[string]int // cluster → replica → clients
	violations []string
}

func (l *ledger) builder(replica string) clusterregistry.Builder[*client] {
	return clusterregistry.BuilderFuncs[*client]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (*client, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			hs := l.holders[c.Name]
			if hs == nil {
				hs = map[string]int{}
				l.holders[c.Name] = hs
			}
			for other, n := range hs {
				if other != replica && n > 0 {
					l.violations = append(l.violations, fmt.Sprintf("%s built %s while %s held it", replica, c.Name, other))
				}
			}
			hs[replica]++
			return &client{c.Name, replica}, nil
		},
		ReleaseFunc: func(c *client) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.holders[c.cluster][c.replica]--
		},
	}
}

// held counts the clusters that replica holds a client of.
func (l *ledger) held(replica string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, hs := range l.holders {
		if hs[replica] > 0 {
			n++
		}
	}
	return n
}

func (l *ledger) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.violations {
		t.Error(v)
	}
}

// hub is a fake hub cluster, a source of clusters and the replicas that
// share them, on one fake clock.
type hub struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	cs    *fake.Clientset
	src   *clusterregistry.MemorySource
	led   *ledger
	names []string

	mu   sync.Mutex
	down map[string]bool // replicas whose Lease writes fail
	rv   int             // the last resourceVersion the hub gave
}

func newHub(t *testing.T, n int) *hub {
	h := &hub{
		t:     t,
		clk:   clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)),
		cs:    fake.NewClientset(),
		led:   &ledger{holders: map[string]map[string]int{}},
		names: names(n),
		down:  map[string]bool{},
	}
	var cs []clusterregistry.Cluster
	for _, name := range h.names {
		cs = append(cs, clusterregistry.Cluster{Name: name, Config: &rest.Config{Host: "https://" + name + ".invalid"}})
	}
	h.src = clusterregistry.NewMemorySource(cs...)
	// A replica that is down cannot write its Lease.
	h.cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if v := a.GetVerb(); v != "create" && v != "update" {
			return false, nil, nil
		}
		lease := a.(interface{ GetObject() runtime.Object }).GetObject().(*coordv1.Lease)
		name := lease.Name
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.down[strings.TrimPrefix(name, "g-")] {
			return true, nil, errors.New("connection refused")
		}
		// As a real hub does, every write gets a greater resourceVersion.
		h.rv++
		lease.ResourceVersion = strconv.Itoa(h.rv)
		return false, nil, nil
	})
	return h
}

func (h *hub) setDown(replica string, down bool) {
	h.mu.Lock()
	h.down[replica] = down
	h.mu.Unlock()
}

type replica struct {
	id   string
	m    *shard.Member
	s    *clusterregistry.Syncer[*client]
	stop func()
}

func (h *hub) start(id string, opts ...clusterregistry.Option) *replica {
	h.t.Helper()
	return h.startObserved(id, nil, opts...)
}

func (h *hub) startObserved(id string, o shard.Observer, opts ...clusterregistry.Option) *replica {
	h.t.Helper()
	return h.startWith(id, h.cs.CoordinationV1(), o, opts...)
}

// startWith starts a replica that reaches the hub through client.
func (h *hub) startWith(id string, client coordclient.CoordinationV1Interface, o shard.Observer, opts ...clusterregistry.Option) *replica {
	h.t.Helper()
	m, err := shard.New(shard.Config{
		Client: client, Namespace: "ns", Group: "g", Identity: id, Clock: h.clk,
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
		Observer: o,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	opts = append([]clusterregistry.Option{clusterregistry.WithInterval(time.Hour), clusterregistry.WithDrainTimeout(time.Second)}, opts...)
	s, err := clusterregistry.NewSyncer(m.Source(h.src), shard.Wrap(m, h.led.builder(id)), opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Run(ctx) })
	wg.Go(func() { _ = s.Run(ctx) })
	r := &replica{id: id, m: m, s: s}
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	h.t.Cleanup(r.stop)
	return r
}

// eventually waits, in real time, for cond; the fake clock stands still.
func (h *hub) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, id := range []string{"a", "b", "c", "d"} {
				if l, err := h.cs.CoordinationV1().Leases("ns").Get(context.Background(), "g-"+id, metav1.GetOptions{}); err == nil {
					h.t.Logf("lease %s: %v", id, l.Annotations)
				}
			}
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled reports whether the replicas serve exactly the clusters that
// their common view gives each, and hold nothing else.
func (h *hub) settled(rs ...*replica) bool {
	ids := make([]shard.Replica, len(rs))
	for i, r := range rs {
		ids[i] = shard.Replica{Identity: r.id, Weight: shard.DefaultWeight}
	}
	v := shard.NewView(ids...)
	want := map[string]int{}
	for _, n := range h.names {
		want[v.Owner(n)]++
	}
	for _, r := range rs {
		st := r.m.Status()
		if testing.Verbose() {
			h.t.Logf("%s: view %s settled %s waitingFor %v owned %d waiting %d held %d serving %d ledger %d want %d", r.id, st.View, st.Settled, st.WaitingFor, st.Owned, st.Waiting, st.Held, len(r.s.Registry().Snapshot().Names()), h.led.held(r.id), want[r.id])
		}
		// The same replicas, and the same incarnations of them.
		if st.View.String() != v.String() || st.View.ID != rs[0].m.Status().View.ID || len(r.s.Registry().Snapshot().Names()) != want[r.id] || h.led.held(r.id) != want[r.id] {
			return false
		}
	}
	return true
}

// stepUntil advances the fake clock by one retry period at a time until
// cond holds (at most a hundred times).
func (h *hub) stepUntil(what string, cond func() bool) {
	h.t.Helper()
	for i := 0; !cond(); i++ {
		if i == 100 {
			h.t.Fatalf("still waiting for %s after 100 retry periods", what)
		}
		h.clk.Step(retryPeriod)
		time.Sleep(10 * time.Millisecond) // for the replicas to react: cond is checked, not assumed
	}
}

// step advances the fake clock by one retry period and waits until every
// replica in up has renewed its Lease since.
func (h *hub) step(up ...*replica) {
	h.t.Helper()
	before := make([]uint64, len(up))
	for i, r := range up {
		before[i] = r.m.Status().Counts.Renewals
	}
	h.clk.Step(retryPeriod)
	for i, r := range up {
		h.eventually(r.id+" renewing", func() bool { return r.m.Status().Counts.Renewals > before[i] })
	}
}

func TestReplicasShareTheClustersWithOneHolderEach(t *testing.T) {
	h := newHub(t, 300)
	a := h.start("a")
	h.eventually("a serving all", func() bool { return h.settled(a) })
	b := h.start("b")
	c := h.start("c")
	h.eventually("a, b and c settled", func() bool { return h.settled(a, b, c) })

	// A fourth joins: it takes only its share, from the others' release.
	sub := a.s.Registry().Subscribe()
	defer sub.Close()
	d := h.start("d")
	h.eventually("a, b, c and d settled", func() bool { return h.settled(a, b, c, d) })
	abc := shard.NewView(shard.Replica{Identity: "a"}, shard.Replica{Identity: "b"}, shard.Replica{Identity: "c"})
	abcd := shard.NewView(shard.Replica{Identity: "a"}, shard.Replica{Identity: "b"}, shard.Replica{Identity: "c"}, shard.Replica{Identity: "d"})
	moved := 0
	for _, n := range h.names {
		if abc.Owner(n) == "a" && abcd.Owner(n) == "d" {
			moved++
		}
	}
	gone := map[string]string{}
	for len(gone) < moved {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ev, err := sub.Next(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == clusterregistry.EventRemoved && !ev.Replay {
			gone[ev.Name] = ev.Reason
		}
	}
	for name, reason := range gone {
		if reason != "shard: moved to d ([d] joined)" {
			t.Errorf("%s left a with reason %q", name, reason)
		}
	}

	// A replica that stops cleanly hands its clusters over at once: the
	// clock does not move.
	d.stop()
	h.eventually("a, b and c settled after d stopped", func() bool { return h.settled(a, b, c) })
	if _, err := h.cs.CoordinationV1().Leases("ns").Get(context.Background(), "g-d", metav1.GetOptions{}); err == nil {
		t.Error("d's Lease outlived d")
	}
	st := a.m.Status()
	if st.Counts.HandoffsOut == 0 || st.Counts.HandoffsIn == 0 || len(st.Replicas) != 3 {
		t.Errorf("a's status after handoffs: %+v", st)
	}
	h.led.check(t)
}

func TestAReplicaThatCannotRenewReleasesBeforeItsPeersTakeOver(t *testing.T) {
	h := newHub(t, 120)
	// a's Syncer would wait an hour for a lease to be returned: the Member
	// releases the client itself before a's Lease can expire.
	a := h.start("a", clusterregistry.WithDrainTimeout(time.Hour))
	b := h.start("b")
	h.eventually("a and b settled", func() bool { return h.settled(a, b) })
	var leased string
	for _, n := range h.names {
		if shard.NewView(shard.Replica{Identity: "a"}, shard.Replica{Identity: "b"}).Owner(n) == "a" {
			leased = n
			break
		}
	}
	l, err := a.s.Registry().Lease(leased)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()

	h.setDown("a", true)
	// Until a's renew deadline, a serves; b keeps renewing.
	for range renewDeadline/retryPeriod - 1 {
		h.step(b)
		if !a.m.Status().Serving {
			t.Fatal("a stopped serving before its renew deadline")
		}
	}
	h.step(b)
	h.eventually("a to stop serving", func() bool { return !a.m.Status().Serving })
	h.eventually("a's Syncer to drop its clusters", func() bool { return len(a.s.Registry().Snapshot().Names()) == 0 })
	if h.led.held("a") != 1 {
		t.Fatalf("a holds %d clients, want the leased one only", h.led.held("a"))
	}
	// Half of LeaseDuration-RenewDeadline later, the Member releases it.
	h.step(b)
	h.step(b)
	h.eventually("a to release the leased client", func() bool { return h.led.held("a") == 0 })
	if got := len(b.s.Registry().Snapshot().Names()); got != 120-h.led.held("a")-countOwned(h.names, "a", "b") {
		// b serves only its own share until a's Lease expires.
		t.Fatalf("b serves %d clusters before a's Lease expired", got)
	}
	// After LeaseDuration without a change of a's Lease, b confirms and
	// takes a's clusters.
	for b.m.Status().View.Has("a") {
		h.step(b)
	}
	h.eventually("b serving all", func() bool { return h.settled(b) })

	// a's hub comes back: it rejoins and gets its share again.
	h.setDown("a", false)
	h.step(a, b)
	h.eventually("a and b settled again", func() bool { return h.settled(a, b) })
	if st := a.m.Status(); st.Counts.LeaseLosses != 1 {
		t.Errorf("a lost its Lease %d times, want 1", st.Counts.LeaseLosses)
	}
	h.led.check(t)
}

func countOwned(clusters []string, self, other string) int {
	v := shard.NewView(shard.Replica{Identity: self}, shard.Replica{Identity: other})
	n := 0
	for _, c := range clusters {
		if v.Owner(c) == self {
			n++
		}
	}
	return n
}

func TestASecondProcessOfOneIdentityWaits(t *testing.T) {
	h := newHub(t, 10)
	a := h.start("a")
	h.eventually("a serving", func() bool { return h.settled(a) })
	twin := h.start("a")
	for range 3 {
		h.step(a)
	}
	if st := twin.m.Status(); st.Serving || st.Counts.Renewals != 0 {
		t.Fatalf("a second process of identity a joined: %+v", st)
	}
	if !a.m.Status().Serving {
		t.Fatal("the first process of a stopped serving")
	}
	h.led.check(t)
}

// A process that waits for its identity's Lease to expire (its predecessor
// was killed) reads that Lease once per RetryPeriod, not again at every
// renewal of every peer: its hub requests do not grow with the group.
func TestAWaitingProcessReadsItsLeaseOncePerRetryPeriod(t *testing.T) {
	h := newHub(t, 10)
	a := h.start("a")
	b := h.start("b")
	c := h.start("c")
	h.eventually("a, b and c settled", func() bool { return h.settled(a, b, c) })
	gets := func() int {
		n := 0
		for _, act := range h.cs.Actions() {
			if g, ok := act.(k8stesting.GetAction); ok && act.GetVerb() == "get" && g.GetName() == "g-a" {
				n++
			}
		}
		return n
	}
	twin := h.start("a")
	h.eventually("the twin to read a's Lease", func() bool { return gets() > 0 })
	before := gets()
	const steps = 4
	for range steps {
		// a, b and c renew once each: three changes the twin watches.
		h.step(a, b, c)
		time.Sleep(50 * time.Millisecond) // for the twin's reaction, if any
	}
	if st := twin.m.Status(); st.Serving {
		t.Fatalf("the twin joined: %+v", st)
	}
	if got := gets() - before; got > steps+1 {
		t.Errorf("the twin read a's Lease %d times in %d retry periods", got, steps)
	}
	h.led.check(t)
}

func TestWrapRefusesAClusterOfAnotherReplica(t *testing.T) {
	h := newHub(t, 50)
	a := h.start("a")
	b := h.start("b")
	h.eventually("a and b settled", func() bool { return h.settled(a, b) })
	var theirs string
	for _, n := range h.names {
		if a.m.Status().View.Owner(n) == "b" {
			theirs = n
			break
		}
	}
	_, err := shard.Wrap(a.m, h.led.builder("a")).Build(context.Background(), clusterregistry.Cluster{Name: theirs})
	if !errors.Is(err, shard.ErrNotOwned) || !strings.Contains(err.Error(), theirs) || !strings.Contains(err.Error(), `replica "b" owns it`) {
		t.Fatalf("Build of b's cluster on a: %v", err)
	}
	h.led.check(t)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cs := fake.NewClientset().CoordinationV1()
	for _, tc := range []struct {
		cfg  shard.Config
		want string
	}{
		{shard.Config{Client: cs, Identity: "a"}, "Group"},
		{shard.Config{Client: cs, Group: "Bad_Group", Identity: "a"}, "Group"},
		{shard.Config{Client: cs, Group: "g", Identity: "A/B"}, "Identity"},
		{shard.Config{Client: cs, Group: "g", Identity: "a", RenewDeadline: 20 * time.Second}, "RenewDeadline"},
		{shard.Config{Client: cs, Group: "g", Identity: "a", Weight: -1}, "Weight"},
	} {
		_, err := shard.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestASingleReplicaOwnsEverythingAndWritesNothing(t *testing.T) {
	m, err := shard.New(shard.Config{Identity: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	src := clusterregistry.NewMemorySource(clusterregistry.Cluster{Name: "x", Config: &rest.Config{Host: "https://x.invalid"}})
	if m.Source(src) != clusterregistry.ClusterSource(src) {
		t.Error("a single replica's Source is not its source")
	}
	led := &ledger{holders: map[string]map[string]int{}}
	b := led.builder("solo")
	if _, err := shard.Wrap(m, b).Build(context.Background(), clusterregistry.Cluster{Name: "x"}); err != nil {
		t.Error(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Error(err)
	}
}

// observer records what an Observer is given.
type observer struct {
	mu       sync.Mutex
	handoffs []shard.Handoff
	last     shard.Status
}

func (o *observer) StatusChanged(s shard.Status) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = s
}

func (o *observer) Handoff(h shard.Handoff) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handoffs = append(o.handoffs, h)
}

func TestTheObserverSeesEveryHandoffAndTheLatestStatus(t *testing.T) {
	h := newHub(t, 100)
	var o observer
	a := h.startObserved("a", &o)
	h.eventually("a serving all", func() bool { return h.settled(a) })
	b := h.start("b")
	h.eventually("a and b settled", func() bool { return h.settled(a, b) })
	lost := 100 - countOwned(h.names, "a", "b")
	h.eventually("a's observer to see its handoffs", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.handoffs) == lost && o.last.Owned == 100-lost && len(o.last.View.Replicas) == 2
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ho := range o.handoffs {
		if ho.In || ho.Reason != "moved to b ([b] joined)" || h.led.held("a") != 100-lost {
			t.Errorf("handoff %+v", ho)
		}
	}
	if c := o.last.Counts; c.HandoffsOut != uint64(lost) || c.ViewChanges == 0 || c.Renewals == 0 {
		t.Errorf("counts %+v", c)
	}
	if o.last.Held != 100-lost || len(o.last.WaitingFor) != 0 || !o.last.Serving {
		t.Errorf("status %+v", o.last)
	}
}

// TestALaggingWatchAfterAPartitionRevivesNoSettlement: a replica cut off
// from the hub loses its Lease, its peer takes its clusters, and when the
// path heals the replica's watch still delivers its peer's Leases from before
// the peer took over, which say it settled on the view of both. Neither
// counts: the replica's view has a new incarnation of it (a new ID), and a
// record older than one it read afresh is ignored. It builds its clusters
// only once its peer has released them.
func TestALaggingWatchAfterAPartitionRevivesNoSettlement(t *testing.T) {
	h := newHub(t, 60)
	lag := &lagging{gate: closedGate()}
	a := h.startWith("a", laggingClient{h.cs.CoordinationV1(), lag}, nil)
	b := h.start("b")
	h.eventually("a and b settled", func() bool { return h.settled(a, b) })
	before := a.m.Status().View

	lag.freeze()
	h.setDown("a", true)
	for b.m.Status().View.Has("a") {
		h.step(b)
	}
	h.eventually("b serving all, a holding nothing", func() bool { return h.settled(b) && h.led.held("a") == 0 })
	// b holds a client of one of a's clusters past the handoff: it keeps
	// it until the drain timeout.
	var theirs string
	for _, n := range h.names {
		if before.Owner(n) == "a" {
			theirs = n
			break
		}
	}
	l, err := b.s.Registry().Lease(theirs)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()

	h.setDown("a", false)
	h.step(a, b)
	h.eventually("a to renew", func() bool { return a.m.Status().Counts.Renewals > 0 && !a.m.Status().Lost })
	if after := a.m.Status().View; after.ID == before.ID || after.String() != before.String() {
		t.Fatalf("a's view after it lost its Lease: %s %s, before: %s %s; want the same replicas under a new ID", after, after.ID, before, before.ID)
	}
	// The stale Leases arrive now, while b still holds the client.
	lag.thaw()
	h.eventually("a and b settled again", func() bool {
		h.step(a, b)
		return h.settled(a, b)
	})
	h.led.check(t)
}

// laggingClient reaches the hub directly but delivers Lease watch events
// only while its lagging is not frozen, as a congested connection does.
type laggingClient struct {
	coordclient.CoordinationV1Interface
	lag *lagging
}

func (c laggingClient) Leases(ns string) coordclient.LeaseInterface {
	return laggingLeases{c.CoordinationV1Interface.Leases(ns), c.lag}
}

type laggingLeases struct {
	coordclient.LeaseInterface
	lag *lagging
}

func (l laggingLeases) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := l.LeaseInterface.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := &laggingWatch{inner: w, out: make(chan watch.Event), stop: make(chan struct{})}
	go out.forward(l.lag)
	return out, nil
}

type lagging struct {
	mu   sync.Mutex
	gate chan struct{} // closed while events flow
}

func closedGate() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (l *lagging) freeze() {
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
}

func (l *lagging) thaw() {
	l.mu.Lock()
	close(l.gate)
	l.mu.Unlock()
}

func (l *lagging) current() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gate
}

type laggingWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func (w *laggingWatch) forward(l *lagging) {
	defer close(w.out)
	for ev := range w.inner.ResultChan() {
		select {
		case <-l.current():
		case <-w.stop:
			return
		}
		select {
		case w.out <- ev:
		case <-w.stop:
			return
		}
	}
}

func (w *laggingWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.inner.Stop()
	})
}

func (w *laggingWatch) ResultChan() <-chan watch.Event { return w.out }

// After an outage of the whole hub longer than LeaseDuration, a replica
// that renews again does not count its peers dead for the silence that the
// outage imposed on them too: it waits LeaseDuration from its own return.
// (It did, and the view flapped: each replica alone, then all again, with
// handoffs for nothing.) A peer that stays silent after that is dead.
func TestAHubOutageKillsNoPeerByItself(t *testing.T) {
	h := newHub(t, 60)
	a := h.start("a")
	b := h.start("b")
	h.eventually("a and b settled", func() bool { return h.settled(a, b) })

	// The hub takes no write for longer than LeaseDuration.
	outage := func() {
		t.Helper()
		h.setDown("a", true)
		h.setDown("b", true)
		h.stepUntil("a and b to stop serving", func() bool { return !a.m.Status().Serving && !b.m.Status().Serving })
		h.clk.Step(leaseDuration)
		h.stepUntil("a and b to release everything", func() bool { return h.led.held("a") == 0 && h.led.held("b") == 0 })
	}
	outage()

	// a comes back first; b is still silent.
	h.setDown("a", false)
	h.step(a)
	h.eventually("a serving again", func() bool { return a.m.Status().Serving })
	if st := a.m.Status(); st.Counts.Expiries != 0 || !st.View.Has("b") {
		t.Fatalf("a counted b dead at its return: expiries %d, view %s", st.Counts.Expiries, st.View)
	}
	// b comes back within LeaseDuration of a's return: nobody was dead.
	h.setDown("b", false)
	h.step(a, b)
	h.eventually("a and b settled again", func() bool { return h.settled(a, b) })
	for _, r := range []*replica{a, b} {
		if n := r.m.Status().Counts.Expiries; n != 0 {
			t.Errorf("%s counted %d expiries after a hub outage", r.id, n)
		}
	}

	// The hub goes again, and this time b does not come back: a takes its
	// clusters LeaseDuration after its own return, not before.
	outage()
	h.setDown("a", false)
	h.step(a)
	var waited time.Duration
	for a.m.Status().View.Has("b") {
		if waited > 2*leaseDuration {
			t.Fatalf("a still counts b alive %s after its return", waited)
		}
		h.step(a)
		waited += retryPeriod
	}
	if waited < leaseDuration-retryPeriod {
		t.Errorf("a counted b dead %s after its return, before LeaseDuration (%s)", waited, leaseDuration)
	}
	h.eventually("a serving all", func() bool { return h.settled(a) })
	h.led.check(t)
}
