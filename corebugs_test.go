package clusterregistry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
)

// partialPublish starts a sync of the fixture's listing in which the clusters
// on stuck hosts wait for f.builder.unstuck, steps the clock until the other
// builds are published, and returns the sync's report channel.
func partialPublish(t *testing.T, f *fixture, fast string) <-chan clusterregistry.SyncReport {
	t.Helper()
	before := f.reg.Snapshot().Generation()
	done := syncAsync(f)
	require.Eventually(t, func() bool {
		return f.builder.inflight.Load() == 1 && f.clock.HasWaiters()
	}, 10*time.Second, time.Millisecond, "the fast builds finish, the stuck one waits")
	require.Eventually(t, func() bool {
		f.clock.Step(time.Second)
		snap := f.reg.Snapshot()
		c, err := snap.Get(fast)
		return snap.Generation() > before && err == nil && c.token == "new"
	}, 10*time.Second, time.Millisecond, "the finished build is published while the stuck one runs")
	return done
}

func TestDefaultDoesNotDependOnBuildTiming(t *testing.T) {
	tests := []struct {
		name        string
		give        []clusterregistry.Cluster // after a listing with "a" the default
		wantDefault string
		wantErr     string
	}{
		{
			name: "two marked, the previous default not among them",
			give: []clusterregistry.Cluster{
				cluster("a", "https://a"),
				asDefault(withToken(cluster("b", "https://b"), "new")),
				asDefault(cluster("n", "stuck://n")),
			},
			wantErr: `clusters ["b" "n"] are all marked default`,
		},
		{
			name: "the default moves to a new cluster",
			give: []clusterregistry.Cluster{
				cluster("a", "https://a"),
				withToken(cluster("b", "https://b"), "new"),
				asDefault(cluster("n", "stuck://n")),
			},
			wantDefault: "n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.src.Set(asDefault(cluster("a", "https://a")), cluster("b", "https://b"))
			f.sync(t)

			f.src.Set(tt.give...)
			done := partialPublish(t, f, "b")
			check := func(when string) {
				name, err := f.reg.Snapshot().DefaultName()
				assert.Equal(t, tt.wantDefault, name, when)
				if tt.wantErr != "" {
					assert.ErrorContains(t, err, tt.wantErr, when)
				} else {
					assert.NoError(t, err, when)
				}
			}
			check("while n builds")
			close(f.builder.unstuck)
			<-done
			check("after the sync")
		})
	}
}

func TestDefaultWhileItsFirstBuildRuns(t *testing.T) {
	f := newFixture(t)
	f.src.Set(asDefault(cluster("a", "https://a")), cluster("b", "https://b"))
	f.sync(t)
	f.src.Set(cluster("a", "https://a"), withToken(cluster("b", "https://b"), "new"), asDefault(cluster("n", "stuck://n")))
	done := partialPublish(t, f, "b")

	_, err := f.reg.Default()
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
	assert.ErrorContains(t, err, `default cluster "n": not built yet`)
	close(f.builder.unstuck)
	<-done
	c, err := f.reg.Default()
	require.NoError(t, err)
	assert.Equal(t, "n", c.name)
}

func TestCloseRightAfterRunsContextEnds(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.syncer.Run(ctx) }()
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
	cancel()
	require.NoError(t, f.syncer.Close(), "Close waits for Run's releases once its context has ended")
	assert.Equal(t, 1, f.builder.releasedCount())
	require.NoError(t, <-ran)
}

// reentrantBuilder calls back into its Syncer from Release, as a Builder
// whose clients own a Syncer of their own might.
type reentrantBuilder struct {
	*fakeBuilder
	onRelease func()
}

func (b *reentrantBuilder) Release(c *fakeClient) {
	b.fakeBuilder.Release(c)
	b.onRelease()
}

// finishesSoon reports whether f returns within two seconds. If it does not,
// it is left to run on: the caller may hold the lock that it waits for.
func finishesSoon(f func()) bool {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

func TestReleaseOfAnUnpublishedClientHoldsNoLock(t *testing.T) {
	fb := newFakeBuilder()
	b := &reentrantBuilder{fakeBuilder: fb}
	src := clusterregistry.NewMemorySource(cluster("a", "https://a"), cluster("hole", "blackhole://hole"))
	s, err := clusterregistry.NewSyncer[*fakeClient](src, b)
	require.NoError(t, err)
	var free []bool
	b.onRelease = func() {
		free = append(free, finishesSoon(func() { _, _ = s.Registry().Get("a"); _, _ = s.Sync(context.Background()) }))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Sync(ctx); done <- err }()
	require.Eventually(t, func() bool { return fb.buildCount() == 2 && fb.inflight.Load() == 1 },
		10*time.Second, time.Millisecond)
	src.Set(cluster("a", "https://a")) // so that the Sync from Release is quick
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Equal(t, []bool{true}, free, "Release of the built, unpublished client ran with the Syncer's lock held")
	require.NoError(t, s.Close())
}

// reentrantObserver calls back into its Syncer from every callback.
type reentrantObserver struct {
	clusterregistry.NopObserver
	s    *clusterregistry.Syncer[*fakeClient]
	free chan bool
}

func (o *reentrantObserver) BuildDone(string, time.Duration, error) {
	o.free <- finishesSoon(func() { _, _ = o.s.Sync(context.Background()) })
}

func (o *reentrantObserver) HealthChanged(string, clusterregistry.Health, clusterregistry.Health) {
	o.free <- finishesSoon(func() { _ = o.s.Probe(context.Background()) })
}

func TestObserverCallbacksHoldNoLock(t *testing.T) {
	o := &reentrantObserver{free: make(chan bool, 100)}
	b := newFakeBuilder()
	b.prober = &scriptedProber{answers: map[string]error{}, block: map[string]bool{}}
	s, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(cluster("a", "https://a")),
		b, clusterregistry.WithObserver(o), clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{}))
	require.NoError(t, err)
	o.s = s
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	assert.True(t, <-o.free, "BuildDone ran while the sync held its lock")
	require.NoError(t, s.Probe(context.Background()))
	assert.True(t, <-o.free, "HealthChanged ran while the probe round held its lock")
	require.NoError(t, s.Close())
}

func TestSubscriberWithNothingPendingIsNotResynced(t *testing.T) {
	f := newFixture(t)
	var many []clusterregistry.Cluster
	for i := range 2000 {
		many = append(many, cluster(fmt.Sprintf("c%04d", i), "https://c"))
	}
	f.src.Set(many...)
	f.sync(t)
	sub := f.reg.Subscribe()
	defer sub.Close()
	require.Len(t, drain(t, sub), 2000)

	f.src.Set()
	f.sync(t)
	events := drain(t, sub)
	require.Len(t, events, 2000)
	for _, ev := range events {
		require.Equal(t, clusterregistry.EventRemoved, ev.Type)
	}
}

func TestAStoppedRegistrySaysSo(t *testing.T) {
	f := newFixture(t)
	f.src.Set(asDefault(cluster("a", "https://a")))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.syncer.Run(ctx) }()
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
	sub := f.reg.Subscribe()
	defer sub.Close()
	cancel()
	require.NoError(t, <-ran)

	_, err := f.reg.Get("a")
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)
	assert.False(t, errors.Is(err, clusterregistry.ErrClusterNotFound), "a stopped registry does not say not found: %v", err)
	_, err = f.reg.Lease("a")
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)
	_, err = f.reg.Default()
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)

	// A subscriber gets the removals, then learns that the Syncer stopped.
	nctx, ncancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ncancel()
	var types []clusterregistry.EventType
	for {
		ev, err := sub.Next(nctx)
		if err != nil {
			assert.ErrorIs(t, err, clusterregistry.ErrStopped)
			break
		}
		types = append(types, ev.Type)
	}
	assert.Equal(t, []clusterregistry.EventType{clusterregistry.EventAdded, clusterregistry.EventRemoved}, types)
	late := f.reg.Subscribe()
	defer late.Close()
	_, err = late.Next(nctx)
	assert.ErrorIs(t, err, clusterregistry.ErrStopped, "a subscription taken after the stop ends at once")
}

// stepUntil steps f's clock by a second until cond holds.
func stepUntil(t *testing.T, f *fixture, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		f.clock.Step(time.Second)
		return cond()
	}, 10*time.Second, 10*time.Millisecond, msg)
}

func TestASlowBuildHoldsBackNothingThatNeedsNoBuild(t *testing.T) {
	f := newFixture(t, clusterregistry.WithBuildTimeout(time.Hour)) // n's build outlasts the test
	f.src.Set(asDefault(cluster("a", "https://a")), cluster("x", "https://x"))
	f.sync(t)
	f.src.Set(cluster("a", "https://a"), asDefault(cluster("n", "stuck://n")))
	done := syncAsync(f)
	require.Eventually(t, func() bool { return f.builder.inflight.Load() == 1 && f.clock.HasWaiters() },
		10*time.Second, time.Millisecond)

	stepUntil(t, f, func() bool {
		_, err := f.reg.Get("x")
		return errors.Is(err, clusterregistry.ErrClusterNotFound)
	}, "x's removal waits for n's build")
	name, err := f.reg.Snapshot().DefaultName()
	assert.NoError(t, err)
	assert.Equal(t, "n", name, "exactly one cluster is marked, and its first build runs")
	close(f.builder.unstuck)
	<-done
}

// lateBuilder counts the builds that start after their context ended.
type lateBuilder struct {
	*fakeBuilder
	late atomic.Int32
}

func (b *lateBuilder) Build(ctx context.Context, c clusterregistry.Cluster) (*fakeClient, error) {
	if ctx.Err() != nil {
		b.late.Add(1)
	}
	return b.fakeBuilder.Build(ctx, c)
}

func TestACancelledSyncStartsNoQueuedBuild(t *testing.T) {
	b := &lateBuilder{fakeBuilder: newFakeBuilder()}
	var cs []clusterregistry.Cluster
	for _, n := range []string{"h1", "h2", "h3", "h4", "h5"} {
		cs = append(cs, cluster(n, "blackhole://"+n))
	}
	s, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(cs...), b,
		clusterregistry.WithConcurrency(1))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Sync(ctx); done <- err }()
	require.Eventually(t, func() bool { return b.inflight.Load() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Zero(t, b.late.Load(), "queued builds started after the sync was cancelled")
	assert.Equal(t, 1, b.buildCount())
	require.NoError(t, s.Close())
}

func TestReleaseAfterTheDrainTimeoutHoldsNoClockLock(t *testing.T) {
	f := newFixture(t, clusterregistry.WithDrainTimeout(time.Second))
	b := &reentrantBuilder{fakeBuilder: newFakeBuilder()}
	s, err := clusterregistry.NewSyncer[*fakeClient](f.src, b, clusterregistry.WithClock(f.clock),
		clusterregistry.WithDrainTimeout(time.Second))
	require.NoError(t, err)
	var once sync.Once
	synced := make(chan struct{})
	b.onRelease = func() { once.Do(func() { _, _ = s.Sync(context.Background()); close(synced) }) }
	f.src.Set(cluster("a", "https://a"))
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	lease, err := s.Registry().Lease("a")
	require.NoError(t, err)
	f.src.Set(withToken(cluster("a", "https://a"), "new"))
	_, err = s.Sync(context.Background())
	require.NoError(t, err)

	require.True(t, finishesSoon(func() { f.clock.Step(2 * time.Second) }),
		"Step deadlocked: Builder.Release ran under the fake clock's lock and called Sync")
	<-synced
	lease.Release()
	require.NoError(t, s.Close())
}
