package fleet

// Tests of the per-cluster workers, with clusterregistrytest:
// fake clusters, a Syncer for the length of the test, and a leak check that
// covers the informers the workers start.

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

type fake = *clusterregistrytest.FakeClient

// recordingWork is a Work func that records which client each running
// worker has, and whether any worker saw its client released while running.
type recordingWork struct {
	mu         sync.Mutex // protects running and sawRelease
	running    map[string]fake
	sawRelease bool
}

func (r *recordingWork) work(ctx context.Context, cluster string, client fake) {
	r.mu.Lock()
	r.running[cluster] = client
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	defer r.mu.Unlock()
	if client.Released() {
		r.sawRelease = true
	}
	delete(r.running, cluster)
}

func (r *recordingWork) client(cluster string) fake {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[cluster]
}

func sorted(s []string) []string { slices.Sort(s); return s }

func newFleet(t *testing.T, reg *clusterregistry.Registry[fake], work WorkFunc[fake], opts ...Option) *Fleet[fake] {
	t.Helper()
	f, err := New(reg, work, opts...)
	require.NoError(t, err)
	return f
}

func TestFleetFollowsTheRegistry(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Fail("broken", assert.AnError)
	source := clusterregistrytest.NewSource(
		clusterregistrytest.NewCluster("a"), clusterregistrytest.NewCluster("b"), clusterregistrytest.NewCluster("broken"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	rec := &recordingWork{running: map[string]fake{}}
	fleet := newFleet(t, syncer.Registry(), rec.work)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	started, stopped := fleet.Reconcile(ctx)
	assert.Equal(t, []string{"a", "b"}, sorted(started), "no worker for a cluster without a client")
	assert.Empty(t, stopped)
	require.Eventually(t, func() bool { return rec.client("a") != nil && rec.client("b") != nil }, 10*time.Second, time.Millisecond)
	assert.Same(t, builder.Client("a"), rec.client("a"))

	started, stopped = fleet.Reconcile(ctx)
	assert.Empty(t, started, "nothing changed")
	assert.Empty(t, stopped)

	// Rotate a's token and remove b.
	oldA, oldB := builder.Client("a"), builder.Client("b")
	source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("a"), "rotated"))
	source.Delete("b")
	clusterregistrytest.Sync(t, syncer)
	assert.False(t, oldA.Released(), "the worker's lease holds the replaced client")
	assert.False(t, oldB.Released(), "the worker's lease holds the removed client")

	started, stopped = fleet.Reconcile(ctx)
	assert.Equal(t, []string{"a"}, started)
	assert.Equal(t, []string{"a", "b"}, sorted(stopped))
	assert.True(t, oldA.Released(), "released once its worker stopped")
	assert.True(t, oldB.Released())
	require.Eventually(t, func() bool { return rec.client("a") == builder.Client("a") }, 10*time.Second, time.Millisecond)
	assert.Nil(t, rec.client("b"))
	assert.False(t, rec.sawRelease, "no worker saw its client released while it ran")

	cancel()
	fleet.stopAll()
	assert.Empty(t, fleet.Workers())
}

func TestFleetRestartsAWorkerThatEnded(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder())
	var mu sync.Mutex
	runs := 0
	fleet := newFleet(t, syncer.Registry(), func(ctx context.Context, _ string, _ fake) {
		mu.Lock()
		runs++
		mu.Unlock()
		// Returns at once, as a worker that failed would.
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet.Reconcile(ctx)
	require.Eventually(t, func() bool {
		fleet.mu.Lock()
		defer fleet.mu.Unlock()
		return fleet.workers["a"].ended()
	}, 10*time.Second, time.Millisecond)
	started, stopped := fleet.Reconcile(ctx)
	assert.Equal(t, []string{"a"}, started)
	assert.Equal(t, []string{"a"}, stopped)
	fleet.stopAll()
	assert.Equal(t, 2, runs)
}

// TestFleetStopsWorkersTogether checks that stopping cancels every worker
// before waiting for any: each worker here returns only once all were
// cancelled, so stopping them one after another would never finish.
func TestFleetStopsWorkersTogether(t *testing.T) {
	names := []string{"a", "b", "c"}
	var clusters []clusterregistry.Cluster
	for _, n := range names {
		clusters = append(clusters, clusterregistrytest.NewCluster(n))
	}
	source := clusterregistrytest.NewSource(clusters...)
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder())
	var cancelled sync.WaitGroup
	cancelled.Add(len(names))
	allCancelled := make(chan struct{})
	go func() { cancelled.Wait(); close(allCancelled) }()
	var waitedAlone atomic.Bool
	fleet := newFleet(t, syncer.Registry(), func(ctx context.Context, _ string, _ fake) {
		<-ctx.Done()
		cancelled.Done()
		select {
		case <-allCancelled:
		case <-time.After(5 * time.Second): // a bound, so a regression fails rather than hangs
			waitedAlone.Store(true)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started, _ := fleet.Reconcile(ctx)
	require.Len(t, started, len(names))

	for _, n := range names {
		source.Delete(n)
	}
	clusterregistrytest.Sync(t, syncer)
	_, stopped := fleet.Reconcile(ctx)
	assert.Equal(t, names, sorted(stopped))
	assert.False(t, waitedAlone.Load(), "a worker was waited for before the others were cancelled")
	assert.Empty(t, fleet.Workers())
}

func TestFleetStartReconcilesOnEvents(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC))
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder())
	rec := &recordingWork{running: map[string]fake{}}
	fleet := newFleet(t, syncer.Registry(), rec.work, WithInterval(time.Second), WithClock(clock))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Start(ctx) }() // joined below
	require.Eventually(t, func() bool { return rec.client("a") != nil }, 10*time.Second, time.Millisecond)

	// The clock never moves: only the Registry's events can start b's work
	// and stop a's.
	source.Upsert(clusterregistrytest.NewCluster("b"))
	clusterregistrytest.Sync(t, syncer)
	require.Eventually(t, func() bool { return rec.client("b") != nil }, 10*time.Second, time.Millisecond)
	source.Delete("a")
	clusterregistrytest.Sync(t, syncer)
	require.Eventually(t, func() bool { return rec.client("a") == nil }, 10*time.Second, time.Millisecond)

	cancel()
	require.NoError(t, <-done)
	assert.Empty(t, fleet.Workers())
	assert.Nil(t, rec.client("a"), "every worker stopped")
}

func TestNewRejectsBadArguments(t *testing.T) {
	reg := clusterregistrytest.StartSyncer(t, clusterregistrytest.NewSource(), clusterregistrytest.NewFakeBuilder()).Registry()
	work := func(context.Context, string, fake) {}
	tests := []struct {
		name string
		give func() (*Fleet[fake], error)
		want error
	}{
		{"nil registry", func() (*Fleet[fake], error) { return New[fake](nil, work) }, errNoRegistry},
		{"nil work", func() (*Fleet[fake], error) { return New(reg, nil) }, errNoWork},
		{"zero interval", func() (*Fleet[fake], error) { return New(reg, work, WithInterval(0)) }, errInterval},
		{"nil clock", func() (*Fleet[fake], error) { return New(reg, work, WithClock(nil)) }, errNoClock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := tt.give()
			assert.ErrorIs(t, err, tt.want)
			assert.Nil(t, f)
		})
	}
}

// TestWorkersIsNotBlockedByAStoppingWorker checks that Workers answers while
// Reconcile waits for a slow WorkFunc: the Fleet holds no lock that Workers
// needs while user code runs.
func TestWorkersIsNotBlockedByAStoppingWorker(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder())
	release := make(chan struct{})
	stopping := make(chan struct{})
	fleet := newFleet(t, syncer.Registry(), func(ctx context.Context, _ string, _ fake) {
		<-ctx.Done()
		close(stopping)
		<-release
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet.Reconcile(ctx)
	source.Delete("a")
	clusterregistrytest.Sync(t, syncer)
	reconciled := make(chan []string, 1)
	go func() { _, stopped := fleet.Reconcile(ctx); reconciled <- stopped }() // joined below
	<-stopping
	assert.Equal(t, []string{"a"}, fleet.Workers(), "still running while its WorkFunc returns")
	close(release)
	assert.Equal(t, []string{"a"}, <-reconciled)
	assert.Empty(t, fleet.Workers())
}
