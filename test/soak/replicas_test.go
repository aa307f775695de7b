package soak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
)

// replicaIDs are the identities of the service's replicas, one slot each.
var replicaIDs = []string{"replica-a", "replica-b", "replica-c"}

// group is the replicas of the service, sharing the clusters through
// package shard. Each slot runs one instance of its identity at a time; a
// killed one is replaced by a new instance of the same identity. Its
// methods are safe for concurrent use.
type group struct {
	w   *world
	led *ledger

	mu        sync.Mutex   // protects live, all, instances and counts
	live      []*service   // by slot; nil while killed and not restarted
	all       []*service   // every instance started, in order
	instances []int        // by slot: the number of the last instance
	counts    shard.Counts // summed over the instances that have ended

	ending sync.WaitGroup // killed instances, until they have ended
}

func newGroup(w *world, led *ledger) *group {
	return &group{w: w, led: led, live: make([]*service, len(replicaIDs)), instances: make([]int, len(replicaIDs))}
}

// start starts a new instance in slot.
func (g *group) start(slot int) error {
	g.mu.Lock()
	g.instances[slot]++
	n := g.instances[slot]
	g.mu.Unlock()
	s, err := startService(g.w, replicaIDs[slot], n, g.led)
	if err != nil {
		return err
	}
	g.led.log(fmt.Sprintf("replica %s starts", s.owner))
	g.mu.Lock()
	g.live[slot] = s
	g.all = append(g.all, s)
	g.mu.Unlock()
	return nil
}

// replicas returns the live instances, in slot order.
func (g *group) replicas() []*service {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*service
	for _, s := range g.live {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// kill kills slot's instance (see service.kill) and returns it; it ends in
// the background, and wait waits for it.
func (g *group) kill(slot int) *service {
	g.mu.Lock()
	s := g.live[slot]
	g.live[slot] = nil
	g.mu.Unlock()
	if s == nil {
		return nil
	}
	g.led.log(fmt.Sprintf("replica %s killed", s.owner))
	s.kill()
	g.ending.Go(func() {
		if err := s.finish(); err != nil {
			g.led.violation("stop", "killed %s: %v", s.owner, err)
		}
		g.ended(s)
	})
	return s
}

// ended adds the Member's counts of an instance that has ended.
func (g *group) ended(s *service) {
	c := s.member.Status().Counts
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counts.Renewals += c.Renewals
	g.counts.LeaseLosses += c.LeaseLosses
	g.counts.ViewChanges += c.ViewChanges
	g.counts.Expiries += c.Expiries
	g.counts.HandoffsIn += c.HandoffsIn
	g.counts.HandoffsOut += c.HandoffsOut
	g.counts.WaitTotal += c.WaitTotal
}

// stop stops every live instance cleanly, at once, and waits for the
// killed ones to end.
func (g *group) stop() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, s := range g.replicas() {
		wg.Go(func() {
			err := s.stop()
			g.ended(s)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	g.ending.Wait()
	return errors.Join(errs...)
}

// closeProxies closes the hub proxies of the instances that were stopped
// cleanly (a killed instance's closed when it ended).
func (g *group) closeProxies() {
	for _, s := range g.allInstances() {
		_ = s.hubProxy.Close()
	}
}

func (g *group) allInstances() []*service {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.all)
}

// proxyPorts adds the port of every instance's hub proxy to ports.
func (g *group) proxyPorts(ports map[string]string) {
	for _, s := range g.allInstances() {
		u, err := url.Parse("https://" + s.hubProxy.Addr())
		if err == nil {
			ports[u.Port()] = s.owner + " hub proxy"
		}
	}
}

// serving returns the live instances whose Registry has a client for name.
func (g *group) serving(name string) []*service {
	var out []*service
	for _, s := range g.replicas() {
		if s.serves(name) {
			out = append(out, s)
		}
	}
	return out
}

// client returns a client of name from a live instance that serves it.
func (g *group) client(name string) (*clusterregistry.Client, bool) {
	for _, s := range g.serving(name) {
		if c, err := s.reg.Get(name); err == nil {
			return c, true
		}
	}
	return nil, false
}

// any reports whether the Snapshot of some live instance satisfies ok.
func (g *group) any(ok func(snapshot) bool) bool {
	for _, s := range g.replicas() {
		if ok(s.reg.Snapshot()) {
			return true
		}
	}
	return false
}

// read is one reader's request to name: to the replica that serves it, or,
// if none says it does (a handoff), to each in turn; the replicas' Registries
// are the only routing table. When none serves it, the ledger counts an
// unserved read: the coverage monitor judges whether that is allowed.
func (g *group) read(ctx context.Context, name string, mode int, hc *http.Client) {
	reps := g.replicas()
	owners := g.serving(name)
	slices.SortStableFunc(reps, func(a, b *service) int {
		return boolRank(slices.Contains(owners, a)) - boolRank(slices.Contains(owners, b))
	})
	for _, s := range reps {
		if s.read(ctx, name, mode, hc) {
			return
		}
	}
	if !over(ctx) {
		g.led.unservedRead()
	}
}

func boolRank(b bool) int {
	if b {
		return 0
	}
	return 1
}

// allServed reports whether every cluster of names is served by a live
// instance, and lists those that are not.
func (g *group) allServed(names []string) (bool, []string) {
	var missing []string
	for _, n := range names {
		if len(g.serving(n)) == 0 {
			missing = append(missing, n)
		}
	}
	return len(missing) == 0, missing
}

// steady reports whether the group has settled: every slot runs an instance
// that serves, sees every replica and waits for none, and each cluster of
// names is served by the replica the view names, and by no other. Otherwise
// it says why not.
func (g *group) steady(names []string) (bool, string) {
	g.mu.Lock()
	live := slices.Clone(g.live)
	g.mu.Unlock()
	var view shard.View
	for i, s := range live {
		if s == nil {
			return false, replicaIDs[i] + " is not running"
		}
		st := s.member.Status()
		switch {
		case !st.Serving:
			return false, s.owner + " does not serve"
		case len(st.View.Replicas) != len(replicaIDs):
			return false, fmt.Sprintf("%s sees %s", s.owner, st.View)
		case len(st.WaitingFor) > 0 || st.Waiting > 0:
			return false, fmt.Sprintf("%s waits for %v", s.owner, st.WaitingFor)
		case view.ID != "" && st.View.ID != view.ID:
			return false, "the replicas' views differ"
		}
		view = st.View
	}
	for _, n := range names {
		owner := view.Owner(n)
		for _, s := range live {
			if s.serves(n) != (s.id == owner) {
				return false, fmt.Sprintf("%s: owned by %s, served by %v", n, owner, owners(g.serving(n)))
			}
		}
	}
	return true, ""
}

func owners(ss []*service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.owner)
	}
	return out
}

// monitor samples, every 100 ms until ctx ends, which of names some live
// instance serves, for the ledger's coverage (unowned cluster-seconds, and
// the handoff bound).
func (g *group) monitor(ctx context.Context, names []string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		for _, n := range names {
			g.led.coverage(n, len(g.serving(n)) > 0, now)
		}
		select {
		case <-ctx.Done():
			g.led.endCoverage(time.Now())
			return
		case <-tick.C:
		}
	}
}

// ownership describes, for the report, what each live replica owns and the
// Members' counts summed over every instance that has ended.
func (g *group) ownership(names []string) []string {
	var out []string
	for _, s := range g.replicas() {
		st := s.member.Status()
		var served []string
		for _, n := range names {
			if s.serves(n) {
				served = append(served, n)
			}
		}
		out = append(out, fmt.Sprintf("  %s: serves %d of the %d members %v; owns %d clusters of the source (probe and extras included), holds %d clients",
			s.owner, len(served), len(names), served, st.Owned, st.Held))
	}
	return out
}

// countsLine describes the Members' counts, summed over every instance.
func (g *group) countsLine() string {
	g.mu.Lock()
	c := g.counts
	n := len(g.all)
	g.mu.Unlock()
	var avg time.Duration
	if c.HandoffsIn > 0 {
		avg = c.WaitTotal / time.Duration(c.HandoffsIn)
	}
	return fmt.Sprintf("  the Members' own counts over %d instances: handoffs in %d (waited %s on average for the release), out %d; lease losses %d; peers' Leases found expired %d; view changes %d; Lease writes %d",
		n, c.HandoffsIn, avg.Round(time.Millisecond), c.HandoffsOut, c.LeaseLosses, c.Expiries, c.ViewChanges, c.Renewals)
}

// instanceNames lists every instance started.
func (g *group) instanceNames() string {
	return strings.Join(owners(g.allInstances()), " ")
}
