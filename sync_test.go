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
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
)

// syncAsync runs Sync in a goroutine and returns its report on a channel.
func syncAsync(f *fixture) <-chan clusterregistry.SyncReport {
	out := make(chan clusterregistry.SyncReport, 1)
	go func() {
		rep, _ := f.syncer.Sync(context.Background())
		out <- rep
	}()
	return out
}

func TestBlackHoledClusterFailsAloneAfterItsTimeout(t *testing.T) {
	f := newFixture(t, clusterregistry.WithBuildTimeout(5*time.Second), clusterregistry.WithConcurrency(2))
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"), cluster("hole", "https://hole"))
	f.sync(t)
	hole := f.client(t, "hole")

	f.src.Set(
		withToken(cluster("a", "https://a"), "new"),
		withToken(cluster("b", "https://b"), "new"),
		withToken(cluster("hole", "blackhole://hole"), "new"),
	)
	done := syncAsync(f)
	// The other clusters build while the black-holed one waits. What is left:
	// the black hole's deadline and the sync's partial-publish tick.
	require.Eventually(t, func() bool {
		return f.builder.buildCount() == 6 && f.clock.Waiters() == 2
	}, 10*time.Second, time.Millisecond)
	select {
	case <-done:
		t.Fatal("sync finished before the black-holed build timed out")
	default:
	}
	// Within a second the finished builds are published, while the black
	// hole still builds.
	f.clock.Step(time.Second)
	require.Eventually(t, func() bool { return f.client(t, "a").token == "new" }, 10*time.Second, time.Millisecond)
	assert.Equal(t, "new", f.client(t, "b").token)
	assert.Same(t, hole, f.client(t, "hole"))
	assert.NoError(t, f.reg.Snapshot().Err("hole"), "still building")

	f.clock.Step(4 * time.Second)
	rep := <-done

	assert.Equal(t, []string{"a", "b"}, rep.Updated)
	assert.Equal(t, []string{"hole"}, rep.Failed)
	assert.Equal(t, "new", f.client(t, "a").token)
	assert.Same(t, hole, f.client(t, "hole"), "the black-holed cluster keeps its last good client")
	assert.ErrorContains(t, f.reg.Snapshot().Err("hole"), `cluster "hole": build timed out after 5s`)
}

func TestBuildThatIgnoresItsDeadlineIsAbandonedAndReleased(t *testing.T) {
	f := newFixture(t, clusterregistry.WithBuildTimeout(time.Second))
	f.src.Set(cluster("ok", "https://ok"), cluster("stuck", "stuck://s"))
	done := syncAsync(f)
	require.Eventually(t, func() bool {
		return f.builder.buildCount() == 2 && f.clock.Waiters() == 2 // the stuck build's deadline and the publish tick
	}, 10*time.Second, time.Millisecond)
	f.clock.Step(time.Second)
	rep := <-done
	assert.Equal(t, []string{"ok"}, rep.Added)
	assert.Equal(t, []string{"stuck"}, rep.Failed)

	// The build returns late: its client never enters the Registry and goes
	// straight back to the Builder.
	close(f.builder.unstuck)
	require.Eventually(t, func() bool { return f.builder.releasedCount() == 1 }, 10*time.Second, time.Millisecond)
	_, err := f.reg.Get("stuck")
	assert.Error(t, err)
}

func TestBuildsRunInParallelUpToTheConcurrency(t *testing.T) {
	const concurrency = 3
	f := newFixture(t, clusterregistry.WithConcurrency(concurrency), clusterregistry.WithBuildTimeout(time.Second))
	var clusters []clusterregistry.Cluster
	for i := range 12 {
		clusters = append(clusters, cluster(fmt.Sprintf("hole-%02d", i), fmt.Sprintf("blackhole://%d", i)))
	}
	f.src.Set(clusters...)
	done := syncAsync(f)
	for round := range 4 {
		require.Eventually(t, func() bool { return f.builder.buildCount() == (round+1)*concurrency },
			10*time.Second, time.Millisecond, "round %d", round)
		assert.Equal(t, int32(concurrency), f.builder.inflight.Load())
		f.clock.Step(time.Second)
	}
	rep := <-done
	assert.Len(t, rep.Failed, 12)
	assert.Equal(t, int32(concurrency), f.builder.maxInflight.Load())
}

func TestCancelledSyncPublishesNothing(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("ok", "https://ok"), cluster("hole", "blackhole://h"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.syncer.Sync(ctx)
		done <- err
	}()
	require.Eventually(t, func() bool { return f.builder.buildCount() == 2 }, 10*time.Second, time.Millisecond)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.Zero(t, f.reg.Snapshot().Generation())
	assert.Equal(t, 1, f.builder.releasedCount(), "the client built before the cancel is released")
}

func TestRunSyncsOnTheIntervalAndReleasesEverythingOnStop(t *testing.T) {
	var lists atomic.Int32
	src := clusterregistry.NewMemorySource(cluster("a", "https://a"), cluster("b", "https://b"))
	counting := clusterregistry.SourceFunc(func(ctx context.Context) ([]clusterregistry.Cluster, error) {
		lists.Add(1)
		return src.List(ctx)
	})
	clk := clocktesting.NewFakeClock(epoch)
	b := newFakeBuilder()
	s, err := clusterregistry.NewSyncer[*fakeClient](counting, b,
		clusterregistry.WithClock(clk), clusterregistry.WithInterval(time.Minute))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.NoError(t, s.WaitForFirstSync(ctx))
	assert.Equal(t, []string{"a", "b"}, s.Registry().Snapshot().Names())

	for i := range 3 {
		require.Eventually(t, clk.HasWaiters, 10*time.Second, time.Millisecond)
		assert.Equal(t, int32(i+1), lists.Load())
		clk.Step(72 * time.Second) // the interval plus its largest jitter
		require.Eventually(t, func() bool { return lists.Load() == int32(i+2) }, 10*time.Second, time.Millisecond)
	}

	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, 2, b.releasedCount(), "every client is released when Run returns")
	_, err = s.Registry().Get("a")
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)
	assert.ErrorIs(t, s.Registry().Snapshot().SourceErr(), clusterregistry.ErrStopped)

	_, err = s.Sync(context.Background())
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)
	assert.Error(t, s.Run(context.Background()), "Run may be called once")
}

func TestCloseStopsASyncerThatOnlySyncDrives(t *testing.T) {
	f := newFixture(t, clusterregistry.WithDrainTimeout(time.Hour))
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	f.sync(t)
	lease, err := f.reg.Lease("a")
	require.NoError(t, err)

	closed := make(chan error, 2)
	go func() { closed <- f.syncer.Close() }()
	// b released, and a's drain timer on the fake clock: Close waits for a's
	// lease.
	require.Eventually(t, func() bool { return f.clock.HasWaiters() && f.builder.releasedCount() == 1 },
		10*time.Second, time.Millisecond)
	go func() { closed <- f.syncer.Close() }()
	select {
	case <-closed:
		t.Fatal("a Close returned while a lease was held")
	case <-time.After(50 * time.Millisecond):
	}
	lease.Release()
	require.NoError(t, <-closed)
	require.NoError(t, <-closed)
	assert.Equal(t, 2, f.builder.releasedCount(), "every client is released when either Close returns")
	_, err = f.reg.Get("a")
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)
	assert.ErrorIs(t, f.reg.Snapshot().SourceErr(), clusterregistry.ErrStopped)

	_, err = f.syncer.Sync(context.Background())
	assert.ErrorIs(t, err, clusterregistry.ErrStopped)
	assert.ErrorIs(t, f.syncer.Run(context.Background()), clusterregistry.ErrStopped, "Run after Close")
	assert.NoError(t, f.syncer.Close(), "a later Close does nothing")
}

// TestCloseWaitsForASyncsReleases closes a Syncer just after a sync has let
// go of its lock and before it releases the client it replaced, which a
// lease holds: Close must wait for that release too.
func TestCloseWaitsForASyncsReleases(t *testing.T) {
	var f *fixture
	var armed atomic.Bool
	closed := make(chan error, 1)
	f = newFixture(t, clusterregistry.WithDrainTimeout(time.Hour), clusterregistry.WithAfterSyncUnlock(func() {
		if !armed.Load() {
			return
		}
		go func() { closed <- f.syncer.Close() }()
		// Close has released the new client (nothing leases it) and waits.
		require.Eventually(t, func() bool { return f.builder.releasedCount() == 1 }, 10*time.Second, time.Millisecond)
	}))
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	lease, err := f.reg.Lease("a")
	require.NoError(t, err)
	f.src.Set(withToken(cluster("a", "https://a"), "rotated"))
	armed.Store(true)
	f.sync(t)
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the replaced client was leased", err)
	case <-time.After(50 * time.Millisecond):
	}
	lease.Release()
	require.NoError(t, <-closed)
	assert.Equal(t, 2, f.builder.releasedCount(), "both clients are released when Close returns")
	assert.True(t, lease.Client().released.Load())
}

// TestCloseWhileRunStops closes a Syncer whose Run is stopping: Close waits
// for Run's release of every client.
func TestCloseWhileRunStops(t *testing.T) {
	f := newFixture(t, clusterregistry.WithDrainTimeout(time.Hour))
	f.src.Set(cluster("a", "https://a"))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.syncer.Run(ctx) }()
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
	lease, err := f.reg.Lease("a")
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool {
		_, err := f.syncer.Sync(context.Background())
		return errors.Is(err, clusterregistry.ErrStopped)
	}, 10*time.Second, time.Millisecond, "Run is stopping")

	closed := make(chan error, 1)
	go func() { closed <- f.syncer.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while Run still waited for a lease", err)
	case <-time.After(50 * time.Millisecond):
	}
	lease.Release()
	require.NoError(t, <-closed)
	require.NoError(t, <-ran)
	assert.Equal(t, 1, f.builder.releasedCount())
}

func TestCloseBeforeAnySync(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.syncer.Close())
	assert.ErrorIs(t, f.syncer.WaitForFirstSync(context.Background()), clusterregistry.ErrStopped)
	assert.Zero(t, f.builder.buildCount())
}

func TestCloseRefusesASyncerThatRunDrives(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.syncer.Run(ctx) }()
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
	assert.Error(t, f.syncer.Close())
	_, err := f.reg.Get("a")
	assert.NoError(t, err, "a refused Close leaves Run's clusters in place")
	cancel()
	require.NoError(t, <-done)
	assert.NoError(t, f.syncer.Close(), "once Run has returned, everything is released")
}

func TestRunWaitsForLeasesBeforeReturning(t *testing.T) {
	f := newFixture(t, clusterregistry.WithDrainTimeout(time.Hour))
	f.src.Set(cluster("a", "https://a"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.syncer.Run(ctx) }()
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
	lease, err := f.reg.Lease("a")
	require.NoError(t, err)

	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while a lease was held")
	case <-time.After(50 * time.Millisecond):
	}
	lease.Release()
	require.NoError(t, <-done)
	assert.True(t, lease.Client().released.Load())
}

func TestTriggersDuringASyncCoalesceIntoOne(t *testing.T) {
	var lists atomic.Int32
	entered := make(chan struct{})
	proceed := make(chan struct{})
	src := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		if lists.Add(1) == 2 {
			entered <- struct{}{}
			<-proceed
		}
		return []clusterregistry.Cluster{cluster("a", "https://a")}, nil
	})
	clk := clocktesting.NewFakeClock(epoch)
	s, err := clusterregistry.NewSyncer[*fakeClient](src, newFakeBuilder(), clusterregistry.WithClock(clk))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.NoError(t, s.WaitForFirstSync(ctx))

	s.Trigger() // starts sync 2, which blocks in List
	<-entered
	for range 100 {
		s.Trigger()
	}
	close(proceed)

	// Sync 3 runs for the hundred triggers; then Run waits on its timer.
	require.Eventually(t, func() bool { return lists.Load() == 3 && clk.HasWaiters() }, 10*time.Second, time.Millisecond)
	assert.Equal(t, int32(3), lists.Load())
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, int32(3), lists.Load(), "exactly one more sync")
}

func TestWatcherChangeSyncsAtOnce(t *testing.T) {
	f := newFixture(t, clusterregistry.WithInterval(time.Hour))
	f.src.Set(cluster("a", "https://a"))
	f.run(t)
	f.src.Upsert(cluster("b", "https://b"))
	require.Eventually(t, func() bool { return len(f.reg.Snapshot().Names()) == 2 }, 10*time.Second, time.Millisecond,
		"a change of the source reaches the Registry without the clock moving")
}

func TestRunRetriesAFailingClusterWhenItsBackoffEnds(t *testing.T) {
	f := newFixture(t, clusterregistry.WithInterval(time.Hour), clusterregistry.WithBackoff(time.Second, time.Minute))
	f.src.Set(cluster("a", "fail://a"))
	f.run(t)
	require.Equal(t, 1, f.builder.buildCount())
	f.waitForTimer(t)
	f.clock.Step(1200 * time.Millisecond) // the backoff plus its largest jitter, far below the interval
	require.Eventually(t, func() bool { return f.builder.buildCount() == 2 }, 10*time.Second, time.Millisecond)
}

// TestRunStopsWhenCancelledAfterABackoffEnded cancels Run during the sync
// that retries a failing cluster whose backoff has ended. The cancelled sync
// publishes nothing, so the backoff still reads as ended: Run must stop
// rather than sync again at once, for ever.
func TestRunStopsWhenCancelledAfterABackoffEnded(t *testing.T) {
	src := clusterregistry.NewMemorySource(cluster("a", "fail://a"))
	var lists atomic.Int32
	listing := make(chan struct{})
	blocking := clusterregistry.SourceFunc(func(ctx context.Context) ([]clusterregistry.Cluster, error) {
		if lists.Add(1) == 2 {
			close(listing)
			<-ctx.Done() // the retry's List waits until Run is cancelled
			return nil, ctx.Err()
		}
		return src.List(ctx)
	})
	clk := clocktesting.NewFakeClock(epoch)
	s, err := clusterregistry.NewSyncer[*fakeClient](blocking, newFakeBuilder(), clusterregistry.WithClock(clk),
		clusterregistry.WithInterval(time.Hour), clusterregistry.WithBackoff(time.Second, time.Minute))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.NoError(t, s.WaitForFirstSync(ctx))
	require.Eventually(t, clk.HasWaiters, 10*time.Second, time.Millisecond)
	clk.Step(1200 * time.Millisecond) // the backoff plus its largest jitter
	<-listing
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return after its context ended (%d Lists)", lists.Load())
	}
}

func TestOneSyncAtATime(t *testing.T) {
	var running, overlap atomic.Int32
	src := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		time.Sleep(time.Millisecond) // widen the window an overlap would need
		return []clusterregistry.Cluster{cluster("a", "https://a")}, nil
	})
	s, err := clusterregistry.NewSyncer[*fakeClient](src, newFakeBuilder())
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				_, err := s.Sync(context.Background())
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, overlap.Load())
}

func TestWaitForFirstSyncHonoursItsContext(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, f.syncer.WaitForFirstSync(ctx), context.Canceled)
}

// A failing source must not make Run spin on a backoff that has passed.
func TestSourceErrorAfterABackoffEndsDoesNotSpin(t *testing.T) {
	var failing atomic.Bool
	var lists atomic.Int32
	mem := clusterregistry.NewMemorySource(cluster("a", "fail://a"))
	src := clusterregistry.SourceFunc(func(ctx context.Context) ([]clusterregistry.Cluster, error) {
		lists.Add(1)
		if failing.Load() {
			return nil, errBoom
		}
		return mem.List(ctx)
	})
	clk := clocktesting.NewFakeClock(epoch)
	s, err := clusterregistry.NewSyncer[*fakeClient](src, newFakeBuilder(), clusterregistry.WithClock(clk),
		clusterregistry.WithInterval(time.Hour), clusterregistry.WithBackoff(time.Second, time.Minute))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.NoError(t, s.WaitForFirstSync(ctx))
	require.Eventually(t, clk.HasWaiters, 10*time.Second, time.Millisecond)

	failing.Store(true)
	clk.Step(1200 * time.Millisecond) // a's backoff ends; the retry finds the source failing
	require.Eventually(t, func() bool { return lists.Load() == 2 }, 10*time.Second, time.Millisecond)
	// Run now waits for the interval: one timer, and no more listing.
	require.Eventually(t, func() bool { return clk.Waiters() == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, int32(2), lists.Load())
}

func TestWaitForFirstSyncWhenRunStopsBeforeIt(t *testing.T) {
	entered := make(chan struct{})
	src := clusterregistry.SourceFunc(func(ctx context.Context) ([]clusterregistry.Cluster, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	s, err := clusterregistry.NewSyncer[*fakeClient](src, newFakeBuilder())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-entered
	cancel()
	require.NoError(t, <-done)
	assert.ErrorIs(t, s.WaitForFirstSync(context.Background()), clusterregistry.ErrStopped)
}

// syncingObserver calls back into the Syncer from SyncDone.
type syncingObserver struct {
	clusterregistry.NopObserver
	s     *clusterregistry.Syncer[*fakeClient]
	depth atomic.Int32
}

func (o *syncingObserver) SyncDone(clusterregistry.SyncReport, error) {
	if o.depth.Add(1) == 1 {
		_, _ = o.s.Sync(context.Background())
	}
}

func TestObserverMayCallBackIntoTheSyncer(t *testing.T) {
	o := &syncingObserver{}
	s, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(cluster("a", "https://a")),
		newFakeBuilder(), clusterregistry.WithObserver(o))
	require.NoError(t, err)
	o.s = s
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int32(2), o.depth.Load())
}
