package shard

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
)

// The bounds the tests hold the library to. They are generous: the machine
// that runs them may be shared and slow. What must be exact (one holder per
// cluster) is checked exactly, from the ledgers.
const (
	clusters = 300
	// balanceTolerance: each replica owns within 15% of an even share.
	balanceTolerance = 0.15
	// steadyTimeout bounds the wait for a group to settle after a change.
	steadyTimeout = 45 * time.Second
	// handoffBound bounds a planned handoff (a replica joins or stops
	// cleanly), from the end of the old owner's release to the end of the
	// new owner's build: the old owner writes its settlement into its Lease
	// at once, the new owner sees it through its watch and syncs at once.
	// Expected: well under a second; the bound allows two retry periods and
	// a loaded machine.
	handoffBound = 2*retryPeriod + 4*time.Second
	// recoveryBound bounds the takeover of a killed replica's clusters, from
	// its death to the end of the new owners' builds: its peers wait a lease
	// duration after they last saw its Lease change (at most a retry period
	// before the kill), confirm the expiry at their next renewal (a retry
	// period), settle on the new view (a Lease write and a watch event) and
	// sync once. Margin for a loaded machine: 4 s.
	recoveryBound = leaseDuration + 2*retryPeriod + 4*time.Second
)

// TestScaleUpAndDown runs items 1 and 2 of issue 13: three replicas, then
// five, then three again. At each steady state every cluster is held by
// exactly one replica, the one weighted rendezvous hashing names, in balance;
// across each change only the clusters that HRW moves change hands, every
// other cluster keeps its very client, and no two processes ever hold one
// cluster at once.
func TestScaleUpAndDown(t *testing.T) {
	testScaleUpAndDown(t, newGroup(t, "scale", clusters))
}

// TestScaleUpAndDownWithRequestsInFlight is TestScaleUpAndDown with every
// served client leased all the time, each lease held 1 s (longer than the
// drain timeout): a release waits for the drain, and the handoff with it.
func TestScaleUpAndDownWithRequestsInFlight(t *testing.T) {
	testScaleUpAndDown(t, newGroup(t, "scale-inflight", clusters, "-in-flight", "1s"))
}

func testScaleUpAndDown(t *testing.T, g *group) {
	three, five := identities(0, 1, 2), identities(0, 1, 2, 3, 4)
	for _, id := range three {
		g.start(id)
	}
	s3 := g.waitSteady(three, steadyTimeout)
	checkBalance(t, "3 replicas", s3.holders, three)

	change := time.Now()
	g.start(identity(3))
	g.start(identity(4))
	s5 := g.waitSteady(five, steadyTimeout)
	checkBalance(t, "5 replicas", s5.holders, five)
	up := g.checkMoves(t, "scale up 3->5", three, five, s3, s5, change)

	change = time.Now()
	var wg sync.WaitGroup
	for _, id := range identities(3, 4) {
		wg.Go(func() { g.stop(id) })
	}
	wg.Wait()
	leases := leaseClient(t, g.hub)
	for _, id := range identities(3, 4) {
		assertLeaseGone(t, leases, g.name, id)
	}
	s3b := g.waitSteady(three, steadyTimeout)
	down := g.checkMoves(t, "scale down 5->3", five, three, s5, s3b, change)
	assert.Equal(t, s3.holders, s3b.holders, "the view of three gives every cluster back to its first owner")

	g.assertNoOverlap(t)
	t.Logf("FIGURES %s: moved up %.1f%%, down %.1f%% (HRW's expectation 40%%)", g.name, 100*up, 100*down)
}

// checkBalance asserts that each replica holds within balanceTolerance of
// an even share.
func checkBalance(t *testing.T, what string, holders map[string]string, ids []string) {
	t.Helper()
	count := map[string]int{}
	for _, id := range holders {
		count[id]++
	}
	even := float64(len(holders)) / float64(len(ids))
	var parts []string
	for _, id := range sorted(ids) {
		dev := (float64(count[id]) - even) / even
		parts = append(parts, fmt.Sprintf("%s=%d (%+.1f%%)", id, count[id], 100*dev))
		assert.LessOrEqual(t, math.Abs(dev), balanceTolerance, "%s: %s holds %d clusters, even is %.0f", what, id, count[id], even)
	}
	t.Logf("FIGURES balance, %s over %d clusters: %s", what, len(holders), strings.Join(parts, " "))
}

// checkMoves asserts that exactly the clusters that HRW moves between the
// views of before and after changed hands, that the others kept their
// client, and that each moved cluster was served again within handoffBound.
// It returns the fraction moved.
func (g *group) checkMoves(t *testing.T, what string, idsBefore, idsAfter []string, before, after steady, change time.Time) float64 {
	t.Helper()
	var moved, predicted []string
	prevView, nextView := g.predict(idsBefore), g.predict(idsAfter)
	for _, c := range g.clusters {
		if before.holders[c] != after.holders[c] {
			moved = append(moved, c)
		} else if before.clients[c].key() != after.clients[c].key() {
			t.Errorf("%s: cluster %s stayed with %s but was built again", what, c, after.holders[c])
		}
		if prevView[c] != nextView[c] {
			predicted = append(predicted, c)
		}
	}
	assert.Equal(t, predicted, moved, "%s: the clusters that changed hands are those HRW moves", what)

	l, err := g.readLedger()
	require.NoError(t, err)
	var handoff, gap durations
	for _, c := range moved {
		old, next := l.byKey[before.clients[c].key()], l.byKey[after.clients[c].key()]
		if l.until(old) > next.start {
			continue // an overlap: assertNoOverlap reports it
		}
		handoff = append(handoff, time.Duration(next.built-l.until(old)))
		gap = append(gap, time.Duration(next.built-l.servedUntil(old)))
	}
	frac := float64(len(moved)) / float64(len(g.clusters))
	t.Logf("FIGURES %s %s: %d of %d clusters moved (%.1f%%), HRW predicted %d", g.name, what, len(moved), len(g.clusters), 100*frac, len(predicted))
	t.Logf("FIGURES %s %s: handoff (old owner's release end -> new owner's build end): %v", g.name, what, handoff)
	t.Logf("FIGURES %s %s: unserved gap per moved cluster (old release start -> new build end): %v", g.name, what, gap)
	t.Logf("FIGURES %s %s: change to steady state: %v", g.name, what, after.at.Sub(change).Round(time.Millisecond))
	assert.LessOrEqual(t, handoff.max(), handoffBound, "%s: slowest handoff", what)
	return frac
}

// assertNoOverlap checks the whole ledger: no cluster was ever held by two
// processes at once.
func (g *group) assertNoOverlap(t *testing.T) {
	t.Helper()
	l, err := g.readLedger()
	require.NoError(t, err)
	bad := l.overlaps()
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("... and %d more", len(bad)-10))
	}
	assert.Empty(t, bad, "two holders of one cluster at once")
	failed := 0
	for _, iv := range l.all {
		if iv.built == 0 && iv.end != 0 {
			failed++
		}
	}
	t.Logf("ledger: %d clients (%d builds cancelled) of %d clusters over %d processes, no two holders at once: %v",
		len(l.all), failed, len(l.byCluster), len(g.allProcs()), len(bad) == 0)
}

// TestKill runs item 3: kill -9 of one replica of three. Its clusters are
// held again within recoveryBound of its death; its last clients count as
// held until it died; no cluster is ever held twice.
func TestKill(t *testing.T) {
	g := newGroup(t, "kill", clusters)
	ids := identities(0, 1, 2)
	for _, id := range ids {
		g.start(id)
	}
	before := g.waitSteady(ids, steadyTimeout)

	victim := g.kill(identity(1))
	after := g.waitSteady(identities(0, 2), steadyTimeout)

	var recovery durations
	for c, id := range before.holders {
		if id != victim.identity {
			assert.Equal(t, before.clients[c].key(), after.clients[c].key(), "cluster %s of a survivor kept its client", c)
			continue
		}
		recovery = append(recovery, time.Duration(after.clients[c].built-victim.diedAt.UnixNano()))
	}
	t.Logf("FIGURES kill -9: %d clusters of the killed replica held again after its death: %v (bound %v)",
		len(recovery), recovery, recoveryBound)
	assert.LessOrEqual(t, recovery.max(), recoveryBound)
	assert.Greater(t, recovery.min(), leaseDuration-retryPeriod, "no peer took a cluster before the killed replica's Lease expired")
	g.assertNoOverlap(t)
}

// TestPartition runs item 4: one replica of three is cut off from the hub
// (its Proxy black-holes every byte). It stops serving its clusters before
// its Lease can expire, the others build them only after that; when the
// path heals it rejoins and gets its share back.
func TestPartition(t *testing.T) {
	testPartition(t, newGroup(t, "partition", clusters))
}

// TestPartitionWithRequestsInFlight is TestPartition with every served
// client leased all the time, each lease held 1 s: the partitioned replica
// must still release before its peers build, its releases waiting for the
// drain timeout.
func TestPartitionWithRequestsInFlight(t *testing.T) {
	testPartition(t, newGroup(t, "partition-inflight", clusters, "-in-flight", "1s"))
}

func testPartition(t *testing.T, g *group) {
	ids := identities(0, 1, 2)
	for _, id := range ids {
		g.start(id)
	}
	before := g.waitSteady(ids, steadyTimeout)
	victim := identity(1)
	pr := g.proc(victim)
	var its []string
	for c, id := range before.holders {
		if id == victim {
			its = append(its, c)
		}
	}
	sort.Strings(its)

	cut := time.Now()
	g.proxy(victim).BlackHole()
	// The victim releases on its own: it cannot reach the hub, but it can
	// still write its ledger.
	var released int64
	waitFor(t, renewDeadline+leaseDuration+5*time.Second, "the partitioned replica releases its clusters", func() error {
		l, err := g.readLedger()
		if err != nil {
			return err
		}
		released = 0
		for _, c := range its {
			iv := l.lastOf(c, victim, math.MaxInt64)
			if iv.pid != pr.pid || iv.end == 0 {
				return fmt.Errorf("cluster %s still held: %w", c, errNotYet)
			}
			released = max(released, iv.end)
		}
		return nil
	})
	during := g.waitSteady(identities(0, 2), steadyTimeout)
	var firstBuild, lastBuild int64 = math.MaxInt64, 0
	for _, c := range its {
		iv := during.clients[c]
		firstBuild = min(firstBuild, iv.start)
		lastBuild = max(lastBuild, iv.built)
	}
	t.Logf("FIGURES %s: black hole -> its last release end %v; -> others' first build start %v, last build end %v (lease duration %v, renew deadline %v)",
		g.name, time.Duration(released-cut.UnixNano()).Round(time.Millisecond),
		time.Duration(firstBuild-cut.UnixNano()).Round(time.Millisecond),
		time.Duration(lastBuild-cut.UnixNano()).Round(time.Millisecond), leaseDuration, renewDeadline)
	assert.Less(t, released, firstBuild, "the partitioned replica released everything before any peer built one of its clusters")
	// It lost its Lease at its last renewal + renewDeadline (at most
	// renewDeadline after the cut) and releases (leaseDuration -
	// renewDeadline)/2 later at the latest: well before its peers, who wait
	// leaseDuration from their last sight of its Lease.
	assert.Less(t, time.Duration(released-cut.UnixNano()), renewDeadline+(leaseDuration-renewDeadline)/2+time.Second,
		"the partitioned replica released within its renew deadline and half its grace")

	st, err := pr.readStatus()
	require.NoError(t, err)
	assert.True(t, st.Shard.Lost, "the partitioned replica knows it lost its Lease")
	assert.Zero(t, st.Registry, "the partitioned replica serves no cluster")

	heal := time.Now()
	require.NoError(t, g.proxy(victim).Heal())
	after := g.waitSteady(ids, steadyTimeout)
	t.Logf("FIGURES %s: heal -> steady with the replica back: %v", g.name, after.at.Sub(heal).Round(time.Millisecond))
	assert.Equal(t, before.holders, after.holders, "the healed replica got its share back")
	g.assertNoOverlap(t)
}

// TestPartitionHealWithLaggingWatch: TestPartition, with the partitioned
// replica's watch of the Leases lagging 2.5 s (a loaded replica or hub) and
// the path healed as soon as the others serve its clusters. When its Lease
// is renewed again, its picture of its peers is the one from before the
// partition (not old enough to be read afresh), in which they have settled
// on the view of all three: the very view it computes again, with the same
// ID. It must not take that for their settlement now: they hold its
// clusters in the view of two.
func TestPartitionHealWithLaggingWatch(t *testing.T) {
	g := newGroup(t, "partition-lag", clusters)
	ids := identities(0, 1, 2)
	g.start(identity(0))
	g.start(identity(1), "-watch-lag", "2500ms")
	g.start(identity(2))
	before := g.waitSteady(ids, steadyTimeout)
	victim := identity(1)
	g.proxy(victim).BlackHole()
	g.waitSteady(identities(0, 2), steadyTimeout)
	require.NoError(t, g.proxy(victim).Heal())
	after := g.waitSteady(ids, steadyTimeout)
	assert.Equal(t, before.holders, after.holders)
	g.assertNoOverlap(t)
}

// TestRollingRestart runs item 5: each of three replicas in turn stops
// cleanly (SIGTERM) and starts again under the same identity. No cluster is
// ever held twice; a stopped replica leaves no client held and no Lease;
// the unowned cluster-seconds of the whole restart are reported.
func TestRollingRestart(t *testing.T) {
	g := newGroup(t, "rolling", clusters)
	ids := identities(0, 1, 2)
	for _, id := range ids {
		g.start(id)
	}
	first := g.waitSteady(ids, steadyTimeout)
	leases := leaseClient(t, g.hub)
	last := first
	var perRestart []string
	for _, id := range ids {
		begin := time.Now()
		pr := g.stop(id)
		assertLeaseGone(t, leases, g.name, id)
		l, err := g.readLedger()
		require.NoError(t, err)
		for _, iv := range l.all {
			if iv.pid == pr.pid {
				assert.NotZero(t, iv.end, "%s stopped cleanly but never released its client of %s", id, iv.cluster)
			}
		}
		g.start(id)
		last = g.waitSteady(ids, steadyTimeout)
		assert.Equal(t, first.holders, last.holders)
		l, err = g.readLedger()
		require.NoError(t, err)
		perRestart = append(perRestart, fmt.Sprintf("%s: %.1f cluster-s in %v", id,
			l.unowned(g.clusters, begin, last.at), last.at.Sub(begin).Round(time.Millisecond)))
	}
	l, err := g.readLedger()
	require.NoError(t, err)
	total := l.unowned(g.clusters, first.at, last.at)
	t.Logf("FIGURES rolling restart of 3 replicas over %d clusters: %.1f unowned cluster-seconds in %v (%s)",
		len(g.clusters), total, last.at.Sub(first.at).Round(time.Millisecond), strings.Join(perRestart, "; "))
	g.assertNoOverlap(t)
}

// TestHubLoad runs item 6: the hub requests of each replica per minute, in
// a steady group of three, at 300 and at 10,000 clusters. They must not
// grow with the number of clusters.
func TestHubLoad(t *testing.T) {
	const window = 20 * time.Second
	measure := func(n int) float64 {
		g := newGroup(t, fmt.Sprintf("load-%d", n), n, "-build-delay", "0")
		ids := identities(0, 1, 2)
		for _, id := range ids {
			g.start(id)
		}
		g.waitSteady(ids, 2*time.Minute)
		before := map[string]status{}
		for _, id := range ids {
			st, err := g.proc(id).readStatus()
			require.NoError(t, err)
			before[id] = st
		}
		// A measurement window, not a wait for an outcome.
		time.Sleep(window)
		var worst float64
		for _, id := range ids {
			st, err := g.proc(id).readStatus()
			require.NoError(t, err)
			require.True(t, st.Shard.Serving)
			elapsed := st.Time.Sub(before[id].Time)
			var total int64
			var parts []string
			for _, k := range sorted(slices.Collect(maps.Keys(st.Requests))) {
				d := st.Requests[k] - before[id].Requests[k]
				total += d
				if d > 0 {
					parts = append(parts, fmt.Sprintf("%s %.0f", k, float64(d)/elapsed.Minutes()))
				}
			}
			perMin := float64(total) / elapsed.Minutes()
			worst = max(worst, perMin)
			t.Logf("FIGURES hub load, %d clusters: %s %.0f requests/min (%s) over %v",
				n, id, perMin, strings.Join(parts, ", "), elapsed.Round(time.Millisecond))
		}
		for _, id := range ids {
			g.stop(id)
		}
		return worst
	}
	small := measure(clusters)
	large := measure(10_000)
	t.Logf("FIGURES hub load: most requests per replica per minute: %.0f at %d clusters, %.0f at 10000", small, clusters, large)
	assert.LessOrEqual(t, large, 1.5*small+10, "hub requests must not grow with the clusters")
}

// leaseClient returns a client of the hub's Leases with the harness's own
// credential, closed at the end of the test.
func leaseClient(t *testing.T, h *hubCluster) coordinationv1.LeasesGetter {
	t.Helper()
	cfg := h.cluster.AdminConfig()
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	c, err := coordinationv1.NewForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	t.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	return c
}

// assertLeaseGone checks that a replica that stopped cleanly deleted its
// Lease.
func assertLeaseGone(t *testing.T, leases coordinationv1.LeasesGetter, group, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := leases.Leases("default").Get(ctx, group+"-"+id, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "Lease of %s after a clean stop: %v", id, err)
}

// TestJoinWithSlowPeerList (a regression test: the lead fixed it in
// e44a69b, found by the unit tests): a replica must not build before it knows its
// peers. replica-1 joins a steady replica-0 while its first list of the
// Leases is slow (held 2 s in its own transport, as a loaded hub or a
// failed first list would make it). Its own Lease is written at once; if it
// counted as joined then, it would see a view of itself alone and build
// every cluster while replica-0 still holds them.
func TestJoinWithSlowPeerList(t *testing.T) {
	g := newGroup(t, "slowlist", clusters)
	g.start(identity(0))
	g.waitSteady(identities(0), steadyTimeout)
	g.start(identity(1), "-delay-first", "list-leases=2s")
	g.waitSteady(identities(0, 1), steadyTimeout)
	g.assertNoOverlap(t)
}

// TestJoinBeforeWatchSeesPeers: a replica must not build before it knows
// every peer whose Lease was written before its own. replica-0 and replica-1
// start together on a fresh group; both list the Leases at once and find
// none. replica-0's first write is held 1 s, replica-1's 2 s, and
// replica-1's watch of the Leases is held 4 s (in its own transport: a slow
// hub, a first Create retried, a watch that the API server refuses until its
// watch cache is ready). replica-0 writes, joins alone and builds every
// cluster; replica-1 writes a second later and, knowing no peer (its list
// was empty, its watch has not started), joins alone too and builds every
// cluster while replica-0 holds them. Having listed the peers once is not
// enough: the list must follow the replica's own write, or the replica must
// wait until its watch shows its own Lease, so that of two replicas the
// later always sees the earlier.
func TestJoinBeforeWatchSeesPeers(t *testing.T) {
	g := newGroup(t, "stalejoin", clusters)
	var wg sync.WaitGroup
	wg.Go(func() { g.start(identity(0), "-delay-first", "get-leases=1s") })
	wg.Go(func() {
		g.start(identity(1), "-delay-first", "get-leases=2s", "-delay-first", "watch-leases=4s")
	})
	wg.Wait()
	g.waitSteady(identities(0, 1), steadyTimeout)
	g.assertNoOverlap(t)
}

// TestCrashRestart: a replica is killed (kill -9) and its successor starts
// at once under the same identity, as a crashed container restarts in its
// pod. The successor finds the Lease of its identity held by another
// process and waits until nobody has renewed it for a lease duration; the
// peers meanwhile take the victim's clusters or not, and give them back.
// No two holders at any moment; the group ends as it began.
func TestCrashRestart(t *testing.T) {
	g := newGroup(t, "crash", clusters)
	ids := identities(0, 1, 2)
	for _, id := range ids {
		g.start(id)
	}
	before := g.waitSteady(ids, steadyTimeout)
	victim := g.kill(identity(1))
	g.start(identity(1))
	after := g.waitSteady(ids, steadyTimeout)
	assert.Equal(t, before.holders, after.holders)
	l, err := g.readLedger()
	require.NoError(t, err)
	t.Logf("FIGURES crash and restart: steady again %v after the kill; %.1f unowned cluster-seconds",
		after.at.Sub(victim.diedAt).Round(time.Millisecond), l.unowned(g.clusters, victim.diedAt, after.at))
	g.assertNoOverlap(t)
}

// TestCrashRestartTwoReplicas: the crash of TestCrashRestart in a group of
// two, twice over, with replica-0 slow: its Lease updates take 300 ms and
// its watch delivers every event 1 s late (a loaded hub and client). No two
// holders at any moment, and the group ends as it began each time. (It was
// written to catch a successor of replica-1 that reads replica-0's
// settlement of the same-looking view from before the crash; with these
// faults the successor always took the Lease over before replica-0 declared
// the old one dead, so it does not reach that interleaving: see the report
// of the e2e branch.)
func TestCrashRestartTwoReplicas(t *testing.T) {
	g := newGroup(t, "crash2", clusters)
	ids := identities(0, 1)
	g.start(identity(0), "-delay-updates", "300ms", "-watch-lag", "1s")
	g.start(identity(1))
	before := g.waitSteady(ids, steadyTimeout)
	for range 2 {
		g.kill(identity(1))
		g.start(identity(1))
		after := g.waitSteady(ids, steadyTimeout)
		assert.Equal(t, before.holders, after.holders)
		g.assertNoOverlap(t)
		if t.Failed() {
			break
		}
	}
}

// TestDuplicateIdentity: a second process starts under an identity that a
// live replica already has (a misconfiguration). It must build nothing
// while the first renews the Lease of that identity; once the first stops
// cleanly, it takes the identity over.
func TestDuplicateIdentity(t *testing.T) {
	g := newGroup(t, "duplicate", clusters)
	ids := identities(0, 1)
	for _, id := range ids {
		g.start(id)
	}
	g.waitSteady(ids, steadyTimeout)
	first := g.proc(identity(1))
	dup := g.start(identity(1))
	// A window in which nothing may happen: two lease durations.
	window := time.Now().Add(2 * leaseDuration)
	for time.Now().Before(window) {
		l, err := g.readLedger()
		require.NoError(t, err)
		for _, iv := range l.all {
			require.NotEqual(t, dup.pid, iv.pid, "the duplicate built %s while the first process of its identity lives", iv.cluster)
		}
		time.Sleep(100 * time.Millisecond) // a poll interval
	}
	st, err := dup.readStatus()
	require.NoError(t, err)
	assert.False(t, st.Shard.Serving, "the duplicate does not serve")

	g.stopProc(first)
	g.waitSteady(ids, steadyTimeout) // with the duplicate as replica-1
	g.assertNoOverlap(t)
}

// TestHubRestart: the hub itself goes away (its API server killed, then
// started again on the same data), so that no replica can renew. Every
// replica stops serving within its renew deadline and its grace; no
// cluster changes hands while the hub is away; when it is back the group
// serves every cluster again as before, with no two holders at any moment.
// It runs last: it restarts the hub that every test shares.
func TestHubRestart(t *testing.T) {
	g := newGroup(t, "hubrestart", clusters)
	ids := identities(0, 1, 2)
	for _, id := range ids {
		g.start(id)
	}
	before := g.waitSteady(ids, steadyTimeout)

	down := time.Now()
	require.NoError(t, g.hub.cluster.Stop())
	var allReleased time.Time
	waitFor(t, renewDeadline+leaseDuration+5*time.Second, "every replica releases every cluster", func() error {
		l, err := g.readLedger()
		if err != nil {
			return err
		}
		for _, iv := range l.all {
			if iv.end == 0 {
				return fmt.Errorf("%s holds %s: %w", iv.identity, iv.cluster, errNotYet)
			}
		}
		allReleased = time.Now()
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	restart := time.Now() // the API server was down until here at least
	require.NoError(t, g.hub.cluster.Start(ctx))
	up := time.Now()
	after := g.waitSteady(ids, steadyTimeout)
	assert.Equal(t, before.holders, after.holders, "the same view gives every cluster to the same replica")

	l, err := g.readLedger()
	require.NoError(t, err)
	var rebuilt int64 = math.MaxInt64
	for _, iv := range l.all {
		if iv.start > down.UnixNano() {
			rebuilt = min(rebuilt, iv.start)
		}
	}
	assert.Greater(t, rebuilt, restart.UnixNano(), "no cluster was built while the hub was down")
	t.Logf("FIGURES hub restart: every client released %v after the hub went down (seen by a poll); restart begun at %v, ready at %v; first build at %v; steady at %v",
		allReleased.Sub(down).Round(time.Millisecond), restart.Sub(down).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond),
		time.Duration(rebuilt-down.UnixNano()).Round(time.Millisecond), after.at.Sub(down).Round(time.Millisecond))
	t.Logf("FIGURES hub restart: %.1f unowned cluster-seconds from the hub's stop to steady", l.unowned(g.clusters, down, after.at))
	g.assertNoOverlap(t)
}
