package soak

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
)

// The classification of errors into expected and violations, on a fixed
// fault history: the grace windows are what the ledger's comments say. It
// needs no cluster, so it runs in every `go test`.
func TestExcused(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	origins := map[string][2]string{
		"dir-1":    {fromDir, "dir-1"},
		"secret-1": {fromSecret, "secret-1"},
		"extra-1":  {fromDir, "dir-1"},
		"other":    {fromDir, "other"},
	}
	led := newLedger(&credentials{}, "hub", func(c string) (string, string) { o := origins[c]; return o[0], o[1] })
	led.faults = []*fault{
		// A rotation of dir-1 written at 110, listed by the source at 111.
		{kind: kindRotate, clusters: []string{"dir-1"}, start: at(100), end: at(110), token: "t1"},
		// A rotation of secret-1 written at 210 while the hub was down until
		// 260; the source's informer listed it at 275.
		{kind: kindRotate, clusters: []string{"secret-1"}, start: at(200), end: at(210), token: "t2"},
		{kind: kindHubDown, clusters: []string{"hub"}, start: at(205), end: at(260)},
		// A black hole of dir-1 from 400 to 430.
		{kind: kindBlackHole, clusters: []string{"dir-1"}, start: at(400), end: at(430)},
		// A rotation of dir-1 at 600 during a black hole of dir-1 until 650.
		{kind: kindRotate, clusters: []string{"dir-1"}, start: at(600), end: at(605), token: "t4"},
		{kind: kindBlackHole, clusters: []string{"dir-1"}, start: at(590), end: at(650)},
		// A rotation of other written at 700 that no listing has shown yet.
		{kind: kindRotate, clusters: []string{"other"}, start: at(690), end: at(700), token: "t5"},
	}
	led.shown = map[string]time.Time{"t1": at(111), "t2": at(275), "t4": at(606)}
	unauthorized := apierrors.NewUnauthorized("Unauthorized")
	timeout := context.DeadlineExceeded
	notFound := clusterregistry.ErrClusterNotFound
	grace := int(rotationBound / time.Second)
	tests := []struct {
		name    string
		cluster string
		err     error
		at      int
		want    bool
	}{
		{"401 just after the source listed the token", "dir-1", unauthorized, 112, true},
		{"401 within the rotation bound", "dir-1", unauthorized, 111 + grace - 1, true},
		{"401 beyond the rotation bound", "dir-1", unauthorized, 111 + grace + 1, false},
		{"401 before any rotation", "dir-1", unauthorized, 50, false},
		{"401 of a cluster not rotated", "secret-1", unauthorized, 112, false},
		{"401 while the hub that holds the new token is down", "secret-1", unauthorized, 250, true},
		{"401 after the hub is back, before its informer lists the token", "secret-1", unauthorized, 270, true},
		{"401 within the bound after the source listed it", "secret-1", unauthorized, 275 + grace - 1, true},
		{"401 beyond the bound after the source listed it", "secret-1", unauthorized, 275 + grace + 1, false},
		{"401 after a rotation during the cluster's black hole", "dir-1", unauthorized, 650 + grace - 1, true},
		{"401 beyond the bound after that black hole", "dir-1", unauthorized, 650 + grace + 1, false},
		{"401 of a rotation no listing has shown yet", "other", unauthorized, 900, true},
		{"not found is never expected", "dir-1", notFound, 410, false},
		{"timeout during the cluster's black hole", "dir-1", timeout, 410, true},
		{"timeout within the grace after it healed", "dir-1", timeout, 430 + int(netGrace/time.Second) - 1, true},
		{"timeout beyond the grace", "dir-1", timeout, 430 + int(netGrace/time.Second) + 1, false},
		{"timeout of another cluster during the black hole", "other", timeout, 410, false},
		{"timeout of a cluster that points at the black-holed server", "extra-1", timeout, 410, true},
		{"timeout with no fault", "dir-1", timeout, 300, false},
		{"an unexplained API error during a hub outage", "secret-1", &apierrors.StatusError{}, 230, false},
		{"an object not found is no fault's", "dir-1", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x"), 112, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := at(tt.at)
			got := led.excused(classify(tt.err), tt.cluster, ts, ts.Add(100*time.Millisecond))
			assert.Equal(t, tt.want, got, "cause %s", classify(tt.err))
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		give error
		want string
	}{
		{clusterregistry.ErrClusterNotFound, causeNotFound},
		{&clusterregistry.ClusterError{Name: "x"}, causeNoClient},
		{apierrors.NewUnauthorized("no"), causeUnauthorized},
		{&clusterregistry.UnreachableError{Name: "x"}, causeUnreachable},
		{context.DeadlineExceeded, causeTimeout},
		{apierrors.NewServiceUnavailable("starting"), causeServer},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, classify(tt.give))
		})
	}
}

// Two replica instances holding a client of one cluster at once is a
// violation; one instance holding two (a client and its replacement), or
// two instances one after the other, is not.
func TestDoubleOwner(t *testing.T) {
	led := newLedger(&credentials{}, "hub", func(c string) (string, string) { return fromDir, c })
	a1 := led.holdStart("replica-a#1", "c1")
	led.holdBuilt(a1)
	a2 := led.holdStart("replica-a#1", "c1") // its replacement, built before a1 goes
	led.holdBuilt(a2)
	led.holdEnd(a1)
	assert.Zero(t, led.totalViolations(), "one instance, two clients")

	b := led.holdStart("replica-b#1", "c1")
	assert.Equal(t, 1, led.violations["double-owner"], "replica-b builds while replica-a holds")
	led.holdEnd(b) // its build failed
	led.holdEnd(a2)
	assert.Equal(t, []string(nil), led.held())

	a3 := led.holdStart("replica-a#2", "c1") // a new instance of replica-a, after the release
	led.holdBuilt(a3)
	assert.Equal(t, 1, led.totalViolations())
	assert.Equal(t, 1, led.handoffs, "replica-a#1 to replica-a#2")
	assert.Equal(t, []string{"replica-a#2 holds c1"}, led.held())
}

// A gap in a cluster's coverage is a violation once it has lasted
// handoffBound past the end of everything that explains it.
func TestCoverage(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	led := newLedger(&credentials{}, "hub", func(c string) (string, string) { return fromDir, c })
	bound := handoffBound.Seconds()
	led.faults = []*fault{
		{kind: kindReplicaKill, start: at(0), end: at(5)},
		{kind: kindBlackHole, clusters: []string{"c2"}, start: at(0), end: at(30)},
		{kind: kindHubDown, clusters: []string{"hub"}, start: at(100), end: at(110)},
	}
	led.overloads = []*fault{{kind: "overload", clusters: []string{"hub"}, start: at(200), end: at(204)}}
	sample := func(cluster string, served bool, from, to float64) {
		for s := from; s <= to; s += 0.1 {
			led.coverage(cluster, served, at(s))
		}
	}
	// A killed replica's cluster, taken over within the bound.
	sample("c1", false, 0, bound-1)
	sample("c1", true, bound-1, bound)
	assert.Zero(t, led.totalViolations())
	// A cluster black-holed meanwhile: excused until netGrace after it healed.
	sample("c2", false, 0, 30+netGrace.Seconds()+bound-1)
	assert.Zero(t, led.totalViolations(), "within the bound after the grace")
	sample("c2", false, 30+netGrace.Seconds()+bound-1, 30+netGrace.Seconds()+bound+2)
	assert.Equal(t, 1, led.violations["unowned"], "beyond the bound after the grace")
	sample("c2", false, 30+netGrace.Seconds()+bound+2, 30+netGrace.Seconds()+bound+10)
	assert.Equal(t, 1, led.violations["unowned"], "one gap counts once")
	sample("c2", true, 80, 80)
	// A hub outage excuses every cluster; so does a slow hub.
	sample("c3", false, 100, 110+netGrace.Seconds()+bound-1)
	sample("c3", true, 140, 140)
	sample("c3", false, 200, 204+netGrace.Seconds()+bound-1)
	sample("c3", true, 240, 240)
	// A replica kill alone does not excuse a gap beyond the bound.
	sample("c4", false, 0, bound+2)
	assert.Equal(t, 2, led.violations["unowned"])
	led.endCoverage(at(300))
	assert.Len(t, led.gapLens, 5)
}

// A slow Get is a violation unless a stall of the whole process overlaps
// it; the watchdog records a wake-up stallBound late, and no earlier one.
func TestSlowGetDuringAStall(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	led := newLedger(&credentials{}, "hub", func(c string) (string, string) { return fromDir, c })
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { watchdog(ctx, led, clk) })
	step := func(d time.Duration) {
		require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond, "the watchdog sleeps")
		clk.Step(d)
	}
	step(stallTick)
	step(stallTick + stallBound - time.Millisecond) // late, but less than the bound
	start := clk.Now()
	step(stallTick + 600*time.Millisecond)
	step(stallTick) // the stall is recorded before the watchdog sleeps again
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond)
	cancel()
	wg.Wait()

	led.mu.Lock()
	require.Len(t, led.stalls, 1)
	assert.Equal(t, start, led.stalls[0].start)
	assert.Equal(t, start.Add(stallTick+600*time.Millisecond), led.stalls[0].end)
	led.mu.Unlock()

	led.get("c1", start.Add(100*time.Millisecond), start.Add(100*time.Millisecond+getBound/2))
	led.get("c1", start.Add(100*time.Millisecond), start.Add(700*time.Millisecond)) // the stall explains it
	assert.Zero(t, led.totalViolations())
	assert.Equal(t, 1, led.expected["machine-stalled/slow-get"])
	led.get("c1", start.Add(time.Second), start.Add(2*time.Second)) // after the stall: the library waited
	assert.Equal(t, 1, led.violations["slow-get"])
}
