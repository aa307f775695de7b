package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// injector injects faults at random from a seed. Every random choice (kind,
// target, duration, parameters) is drawn by the scheduling goroutine alone,
// in order, so a seed replays the same schedule; only the timing is real.
type injector struct {
	w   *world
	led *ledger
	g   *group // the replicas; recovery is measured on whichever serves a cluster
	rng *rand.Rand

	maxActive int

	mu      sync.Mutex      // protects busy and harness
	busy    map[string]bool // resources a running fault holds: proxy/NAME, server/NAME, entry/NAME, hub, extra, replica
	harness []string        // failures of the harness itself (not of the library)

	wg     sync.WaitGroup
	extras int
}

var kinds = []string{kindBlackHole, kindDelay, kindRefuse, kindKill, kindRotate, kindRewrite, kindCorrupt, kindHubDown, kindAddRemove, kindReplicaKill}

// run schedules faults until ctx ends, then waits for the running ones to
// heal.
func (in *injector) run(ctx context.Context) {
	defer in.wg.Wait()
	for {
		pause := time.Duration(500+in.rng.IntN(2500)) * time.Millisecond
		kind := kinds[in.rng.IntN(len(kinds))]
		member := in.w.members[in.rng.IntN(len(in.w.members))]
		hold := time.Duration(2000+in.rng.IntN(10000)) * time.Millisecond
		param := in.rng.IntN(1000)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		in.mu.Lock()
		active := 0
		for _, b := range in.busy {
			if b {
				active++
			}
		}
		in.mu.Unlock()
		if active >= in.maxActive {
			continue
		}
		in.start(ctx, kind, member, hold, param)
	}
}

// take marks resources busy, or reports false if one already is.
func (in *injector) take(res ...string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range res {
		if in.busy[r] {
			return false
		}
	}
	for _, r := range res {
		in.busy[r] = true
	}
	return true
}

func (in *injector) free(res ...string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range res {
		delete(in.busy, r)
	}
}

func (in *injector) harnessFailed(format string, args ...any) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.harness = append(in.harness, fmt.Sprintf(format, args...))
}

// start launches one fault, unless what it needs is busy.
func (in *injector) start(ctx context.Context, kind string, m *localcluster.Cluster, hold time.Duration, param int) {
	name := m.Name()
	e := in.w.entry(name)
	var res []string
	var body func()
	switch kind {
	case kindBlackHole, kindDelay, kindRefuse:
		res = []string{"proxy/" + name}
		body = func() { in.pathFault(ctx, kind, m, hold, time.Duration(50+param/2)*time.Millisecond) }
	case kindKill:
		res = []string{"server/" + name}
		body = func() { in.kill(ctx, m, hold) }
	case kindRotate:
		res = []string{"server/" + name, "entry/" + name}
		body = func() { in.rotate(ctx, e) }
	case kindRewrite, kindCorrupt:
		// Pick a member whose entry lives where the fault acts.
		want := fromDir
		if kind == kindCorrupt {
			want = fromSecret
		}
		var candidates []*entry
		for _, c := range in.w.members {
			if o := in.w.entry(c.Name()); o != nil && o.origin == want {
				candidates = append(candidates, o)
			}
		}
		e = candidates[param%len(candidates)]
		res = []string{"entry/" + e.name}
		if kind == kindRewrite {
			body = func() { in.rewrite(e, 3+param%4, time.Duration(20+param%180)*time.Millisecond) }
		} else {
			body = func() { in.corrupt(ctx, e, hold, param) }
		}
	case kindHubDown:
		res = []string{"hub", "server/" + in.w.hub.Name()}
		body = func() { in.hubDown(ctx, hold, param%3) }
	case kindAddRemove:
		// The target's server stays as it is while the extra cluster lives:
		// no rotation revokes the token its entry was written with.
		res = []string{"extra", "server/" + name}
		origin := fromDir
		if param%2 == 1 {
			origin = fromSecret
		}
		in.extras++
		extra := &entry{name: fmt.Sprintf("extra-%d", in.extras), origin: origin, target: m}
		body = func() { in.addRemove(ctx, extra, hold) }
	case kindReplicaKill:
		// One replica at a time: the two others carry the clusters.
		res = []string{"replica"}
		slot := param % len(replicaIDs)
		body = func() { in.killReplica(ctx, slot, hold) }
	}
	if !in.take(res...) {
		return
	}
	in.wg.Go(func() {
		defer in.free(res...)
		body()
	})
}

// pathFault black-holes, slows or refuses the path to m for hold.
func (in *injector) pathFault(ctx context.Context, kind string, m *localcluster.Cluster, hold, delay time.Duration) {
	detail := ""
	switch kind {
	case kindBlackHole:
		m.BlackHole()
	case kindDelay:
		m.SetDelay(delay)
		detail = delay.String()
	case kindRefuse:
		if err := m.Refuse(); err != nil {
			in.harnessFailed("refuse %s: %v", m.Name(), err)
			return
		}
	}
	f := in.led.startFault(kind, []string{m.Name()}, detail)
	sleep(ctx, hold)
	if err := m.Heal(); err != nil {
		in.harnessFailed("heal %s: %v", m.Name(), err)
	}
	in.led.endFault(f)
	in.measureRecovery(ctx, kind, m.Name(), f.end)
}

// kill stops m's API server for hold, then starts it again.
func (in *injector) kill(ctx context.Context, m *localcluster.Cluster, hold time.Duration) {
	f := in.led.startFault(kindKill, []string{m.Name()}, "")
	if err := m.Stop(); err != nil {
		in.harnessFailed("stop %s: %v", m.Name(), err)
	}
	sleep(ctx, hold)
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := m.Start(sctx); err != nil {
		in.harnessFailed("start %s: %v", m.Name(), err)
	}
	in.led.endFault(f)
	in.measureRecovery(ctx, kindKill, m.Name(), f.end)
}

// measureRecovery records how long after since the client for name of the
// replica that serves it answered again.
func (in *injector) measureRecovery(ctx context.Context, kind, name string, since time.Time) {
	for ctx.Err() == nil && time.Since(since) < 2*time.Minute {
		if client, ok := in.g.client(name); ok {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := client.Kubernetes().CoreV1().Namespaces().Get(rctx, localcluster.Namespace, metav1.GetOptions{})
			cancel()
			if err == nil {
				in.led.recovered(kind, time.Since(since))
				return
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// killReplica kills slot's replica (see service.kill), keeps it down for
// down, then starts a new instance of the same identity. It records two
// recoveries: replica-killed, from the kill until every member is served
// again (by the survivors, or already by the new instance); and
// replica-rejoined, from the restart until the group is steady again (the
// new instance serves its share, and only it).
func (in *injector) killReplica(ctx context.Context, slot int, down time.Duration) {
	f := in.led.startFault(kindReplicaKill, nil, replicaIDs[slot])
	victim := in.g.kill(slot)
	if victim == nil {
		in.harnessFailed("kill %s: not running", replicaIDs[slot])
		in.led.endFault(f)
		return
	}
	var probe sync.WaitGroup
	probe.Go(func() {
		for ctx.Err() == nil && time.Since(f.start) < 2*time.Minute {
			if ok, _ := in.g.allServed(in.w.memberNames()); ok {
				in.led.recovered(kindReplicaKill, time.Since(f.start))
				return
			}
			sleep(ctx, 50*time.Millisecond)
		}
	})
	sleep(ctx, down)
	err := in.g.start(slot)
	in.led.endFault(f)
	if err != nil {
		in.harnessFailed("restart %s after killing %s: %v", replicaIDs[slot], victim.owner, err)
		probe.Wait()
		return
	}
	probe.Wait()
	for ctx.Err() == nil && time.Since(f.end) < 2*time.Minute {
		if ok, _ := in.g.steady(in.w.memberNames()); ok {
			in.led.recovered("replica-rejoined", time.Since(f.end))
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// rotate gives e a new token in its source, then revokes the old one at
// once, as an operator whose rotation does not wait for its readers would.
// The rotation "ends" (the source shows the new token) when the write is
// done; from then the Syncer has rotationBound to serve the new token.
func (in *injector) rotate(ctx context.Context, e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := in.led.startFault(kindRotate, []string{e.name}, "")
	defer in.led.endFault(f)
	old := e.token
	tok, err := e.target.IssueToken(context.Background())
	if err != nil {
		in.harnessFailed("issue token %s: %v", e.name, err)
		return
	}
	in.w.creds.add(tok)
	in.led.setToken(f, tok)
	e.token = tok
	if err := in.w.write(context.Background(), e, nil); err != nil {
		in.harnessFailed("write %s: %v", e.name, err)
		return
	}
	in.led.endFault(f)
	var probe sync.WaitGroup
	probe.Go(func() {
		for ctx.Err() == nil && time.Since(f.end) < 2*time.Minute {
			if c, ok := in.g.client(e.name); ok && c.Config().BearerToken == tok {
				d := time.Since(f.end)
				in.led.recovered(kindRotate, d)
				in.led.slowChange("a new token", e.name, f, f.end, d)
				return
			}
			sleep(ctx, 50*time.Millisecond)
		}
		if ctx.Err() == nil {
			in.led.slowChange("a new token", e.name, f, f.end, time.Since(f.end))
		}
	})
	if err := e.target.RevokeToken(context.Background(), old); err != nil {
		in.harnessFailed("revoke token %s: %v", e.name, err)
	}
	probe.Wait()
}

// rewrite rewrites e's file in place, non-atomically, with the same content.
func (in *injector) rewrite(e *entry, chunks int, pause time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := in.led.startFault(kindRewrite, []string{e.name}, fmt.Sprintf("%d chunks, %s apart", chunks, pause))
	defer in.led.endFault(f)
	if err := in.w.writeSlowly(e, chunks, pause); err != nil {
		in.harnessFailed("rewrite %s: %v", e.name, err)
	}
}

// corrupt puts an unusable kubeconfig (quoting a credential) into e's
// Secret for hold, then mends it.
func (in *injector) corrupt(ctx context.Context, e *entry, hold time.Duration, param int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	marker := fmt.Sprintf("soak-corrupt-credential-%08x%08x", param, time.Now().UnixNano())
	in.w.creds.add(marker)
	bad := []byte("apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: " + marker + "}}\n")
	if param%2 == 0 {
		bad = []byte{} // an empty kubeconfig
	}
	f := in.led.startFault(kindCorrupt, []string{e.name}, "")
	if err := in.w.write(context.Background(), e, bad); err != nil {
		in.harnessFailed("corrupt %s: %v", e.name, err)
	}
	sleep(ctx, hold)
	// A client built from the mended entry may be built before the write
	// returns: it counts from the start of the write.
	mend := time.Now()
	if err := in.w.write(context.Background(), e, nil); err != nil {
		in.harnessFailed("mend %s: %v", e.name, err)
	}
	in.led.endFault(f)
	for ctx.Err() == nil && time.Since(f.end) < 2*time.Minute {
		if in.g.any(func(snap snapshot) bool {
			info, ok := snap.Cluster(e.name)
			return ok && info.Err == nil && info.BuiltAt.After(mend)
		}) {
			in.led.recovered(kindCorrupt, time.Since(f.end))
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// hubDown makes the hub unreachable for hold: black-holed, refused, or its
// API server killed.
func (in *injector) hubDown(ctx context.Context, hold time.Duration, mode int) {
	hub := in.w.hub
	how := []string{"black-hole", "refuse", "kill"}[mode]
	f := in.led.startFault(kindHubDown, []string{hub.Name()}, how)
	switch mode {
	case 0:
		hub.BlackHole()
	case 1:
		if err := hub.Refuse(); err != nil {
			in.harnessFailed("refuse hub: %v", err)
		}
	case 2:
		if err := hub.Stop(); err != nil {
			in.harnessFailed("stop hub: %v", err)
		}
	}
	sleep(ctx, hold)
	if mode == 2 {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		if err := hub.Start(sctx); err != nil {
			in.harnessFailed("start hub: %v", err)
		}
		cancel()
	} else if err := hub.Heal(); err != nil {
		in.harnessFailed("heal hub: %v", err)
	}
	in.led.endFault(f)
	// Every replica stopped serving when it could not renew its Lease:
	// served again once every member is (hub-down-served).
	var served sync.WaitGroup
	defer served.Wait()
	served.Go(func() {
		for ctx.Err() == nil && time.Since(f.end) < 2*time.Minute {
			if ok, _ := in.g.allServed(in.w.memberNames()); ok {
				in.led.recovered(kindHubDown+"-served", time.Since(f.end))
				return
			}
			sleep(ctx, 50*time.Millisecond)
		}
	})
	// Recovered once a change made in the hub reaches a Registry.
	value := strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := in.w.touchProbe(context.Background(), value); err != nil {
		in.harnessFailed("%v", err)
		return
	}
	for ctx.Err() == nil && time.Since(f.end) < 2*time.Minute {
		if in.g.any(func(snap snapshot) bool {
			info, ok := snap.Cluster(probeCluster)
			return ok && info.Labels[probeLabel] == value
		}) {
			in.led.recovered(kindHubDown, time.Since(f.end))
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
	if ctx.Err() == nil {
		in.led.violation("hub-not-recovered", "a change in the hub did not reach the Registry within 2 minutes of the hub's return (%s)", how)
	}
}

// addRemove adds a cluster to a source, keeps it for hold, removes it.
func (in *injector) addRemove(ctx context.Context, e *entry, hold time.Duration) {
	if t := in.w.entry(e.target.Name()); t != nil {
		t.mu.Lock()
		e.token = t.token
		t.mu.Unlock()
	}
	f := in.led.startFault(kindAddRemove, []string{e.name}, e.origin+" → "+e.target.Name())
	defer in.led.endFault(f)
	if err := in.w.add(context.Background(), e); err != nil {
		in.harnessFailed("add %s: %v", e.name, err)
		return
	}
	added := time.Now()
	for ctx.Err() == nil && time.Since(added) < changeWait {
		if in.g.any(func(snap snapshot) bool { _, ok := snap.Cluster(e.name); return ok }) {
			d := time.Since(added)
			in.led.recovered("cluster-added", d)
			in.led.slowChange("a new cluster", e.name, f, added, d)
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	sleep(ctx, hold)
	if err := in.w.remove(context.Background(), e); err != nil {
		in.harnessFailed("remove %s: %v", e.name, err)
		return
	}
	removed := time.Now()
	for time.Since(removed) < changeWait {
		if !in.g.any(func(snap snapshot) bool { _, ok := snap.Cluster(e.name); return ok }) {
			d := time.Since(removed)
			in.led.recovered("cluster-removed", d)
			in.led.slowChange("the removal", e.name, f, removed, d)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.led.violation("not-removed", "%s still in the Registry %s after it left its source; faults meanwhile: %s",
		e.name, changeWait, in.led.activeFaults(removed, time.Now()))
}

// changeWait bounds the wait for an added or removed cluster to show. The
// bound that counts is slowChange's; this one only ends the wait, and it is
// above the hub's informerGrace (a change written during a hub outage shows
// only after the informer's recovery).
const changeWait = 3 * time.Minute

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
