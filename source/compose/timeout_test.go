package compose_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/compose"
)

// hanging is a source whose List, once hang is set, blocks until release
// is closed, or until its ctx ends if it honours ctx. Every call is counted.
type hanging struct {
	hang     atomic.Bool
	honorCtx bool
	calls    atomic.Int64
	entered  chan struct{}
	release  chan struct{}
}

func newHanging(honorCtx bool) *hanging {
	return &hanging{honorCtx: honorCtx, entered: make(chan struct{}, 10), release: make(chan struct{})}
}

func (h *hanging) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	h.calls.Add(1)
	if !h.hang.Load() {
		return []clusterregistry.Cluster{cluster("db", "https://db")}, nil
	}
	h.entered <- struct{}{}
	done := ctx.Done()
	if !h.honorCtx {
		done = nil
	}
	select {
	case <-done:
		return nil, ctx.Err()
	case <-h.release:
		return []clusterregistry.Cluster{cluster("db", "https://db-late")}, nil
	}
}

type listed struct {
	clusters []clusterregistry.Cluster
	err      error
}

// listAfterTimeout lists src in a goroutine, waits for the hanging part to
// be called and for the part timer, moves clk past it and returns what List
// returned.
func listAfterTimeout(t *testing.T, src clusterregistry.ClusterSource, h *hanging, clk *fakeclock.FakeClock, d time.Duration) listed {
	t.Helper()
	return listAfterTimeoutOnceAnswered(t, src, h, clk, d, nil)
}

// listAfterTimeoutOnceAnswered is listAfterTimeout that also waits, before
// moving clk, for one result on answered (if not nil).
func listAfterTimeoutOnceAnswered(t *testing.T, src clusterregistry.ClusterSource, h *hanging, clk *fakeclock.FakeClock, d time.Duration, answered <-chan struct{}) listed {
	t.Helper()
	done := make(chan listed, 1)
	go func() {
		clusters, err := src.List(context.Background())
		done <- listed{clusters, err}
	}()
	if h != nil {
		<-h.entered
	}
	if answered != nil {
		<-answered
	}
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond, "List sets its part timer")
	clk.Step(d)
	select {
	case r := <-done:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("List did not return after the part timeout")
		return listed{}
	}
}

func TestMergeAHangingPartCostsOnlyItsOwnClusters(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	h := newHanging(true)
	steady := clusterregistry.NewMemorySource(cluster("mem", "https://mem"))
	answered := make(chan struct{}, 10)
	src := compose.MergeWith([]clusterregistry.ClusterSource{steady, h},
		compose.WithPartTimeout(5*time.Second), compose.WithClock(clk),
		compose.WithAnswered(func() { answered <- struct{}{} }))
	_, err := src.List(context.Background())
	require.NoError(t, err)
	<-answered
	<-answered

	h.hang.Store(true)
	steady.Upsert(cluster("mem2", "https://mem2"))
	// The timeout comes only after the steady part has answered, however
	// slow the machine: then it is no part of the timeout.
	r := listAfterTimeoutOnceAnswered(t, src, h, clk, 5*time.Second, answered)
	require.NoError(t, r.err, "a hanging part fails nobody else")
	assert.Equal(t, []got{
		{Name: "db", Err: "source 1: field list: no answer within 5s (WithPartTimeout): context deadline exceeded; keeping its last listing"},
		{Name: "mem", Host: "https://mem"},
		{Name: "mem2", Host: "https://mem2"},
	}, summarize(r.clusters), "the healthy part's change comes through")
	assert.Equal(t, "https://db", r.clusters[0].Config.Host, "the hanging part's last good config comes along")
	assert.ErrorIs(t, r.clusters[0].Err, context.DeadlineExceeded)
	// TestMain's goleak check: the hung List saw its ctx cancelled and returned.
}

// TestMergeDoesNotPileUpListsOfAPartThatIgnoresCtx: a part that ignores ctx
// keeps its List running; the next merged List does not call it again, and
// its goroutine ends when its List does.
func TestMergeDoesNotPileUpListsOfAPartThatIgnoresCtx(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	h := newHanging(false)
	src := compose.MergeWith([]clusterregistry.ClusterSource{static(cluster("a", "https://a")), h},
		compose.WithPartTimeout(time.Second), compose.WithClock(clk))
	_, err := src.List(context.Background())
	require.NoError(t, err)

	h.hang.Store(true)
	r := listAfterTimeout(t, src, h, clk, time.Second)
	require.NoError(t, r.err)
	require.Equal(t, int64(2), h.calls.Load())

	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(2), h.calls.Load(), "no second List of a part whose List still runs")
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a"},
		{Name: "db", Err: "source 1: field list: its List of an earlier merged List has not returned: " +
			"context deadline exceeded; keeping its last listing"},
	}, summarize(clusters))

	close(h.release)
	require.Eventually(t, func() bool {
		clusters, err := src.List(context.Background())
		return err == nil && clusters[1].Err == nil && h.calls.Load() == 3
	}, 5*time.Second, time.Millisecond, "once its List returns, the part is called again")
}

func TestMergeReturnsWhenCtxEndsWhileAPartHangs(t *testing.T) {
	h := newHanging(true)
	h.hang.Store(true)
	src := compose.Merge(static(cluster("a", "https://a")), h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := src.List(ctx)
		done <- err
	}()
	<-h.entered
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("List did not return when its ctx ended")
	}
}
