package controllerruntime

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func req(cluster, name string) Request {
	return Request{ClusterName: cluster, Request: reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}}
}

func newTestQueue() (*fairQueue, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	return newFairQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[Request](time.Second, time.Minute), clk, 1), clk
}

func getN(t *testing.T, q *fairQueue, n int) []Request {
	t.Helper()
	var out []Request
	for range n {
		r, ok := q.get()
		require.True(t, ok)
		out = append(out, r)
		q.done(r)
	}
	return out
}

// TestFairQueueServesClustersRoundRobin checks the bound: requests of quiet
// clusters, queued after a thousand of a flooded cluster, are handed out
// after at most one of the flooded cluster's.
func TestFairQueueServesClustersRoundRobin(t *testing.T) {
	q, _ := newTestQueue()
	for i := range 1000 {
		q.add(req("flood", fmt.Sprint(i)))
	}
	q.add(req("a", "x"))
	q.add(req("b", "x"))
	q.add(req("a", "y"))
	got := getN(t, q, 6)
	assert.Equal(t, []Request{
		req("flood", "0"), req("a", "x"), req("b", "x"),
		req("flood", "1"), req("a", "y"), req("flood", "2"),
	}, got)
	assert.Equal(t, 997, q.len())
}

func TestFairQueueDeduplicates(t *testing.T) {
	q, _ := newTestQueue()
	q.add(req("a", "x"))
	q.add(req("a", "x"))
	assert.Equal(t, 1, q.len())

	r, ok := q.get()
	require.True(t, ok)
	q.add(r) // while processing: not handed out twice at once
	q.add(r)
	assert.Equal(t, 0, q.len())
	q.done(r)
	assert.Equal(t, 1, q.len(), "added again during processing: queued once after done")
}

func TestFairQueueDropCluster(t *testing.T) {
	q, _ := newTestQueue()
	q.add(req("gone", "x"))
	q.add(req("gone", "y"))
	q.add(req("stays", "x"))
	r, _ := q.get() // gone/x is processing
	require.Equal(t, req("gone", "x"), r)
	q.add(r)
	q.dropCluster("gone")
	q.done(r)
	assert.Equal(t, []Request{req("stays", "x")}, getN(t, q, 1))
	assert.Equal(t, 0, q.len(), "neither the queued nor the re-added request of the dropped cluster")
}

func TestFairQueueDelaysOnTheClock(t *testing.T) {
	q, clk := newTestQueue()
	q.addAfter(req("a", "x"), 10*time.Second)
	q.addRateLimited(req("a", "y")) // first failure: 1s
	assert.Equal(t, 0, q.len())
	clk.Step(time.Second)
	assert.Equal(t, []Request{req("a", "y")}, getN(t, q, 1))
	clk.Step(9 * time.Second)
	assert.Equal(t, []Request{req("a", "x")}, getN(t, q, 1))

	q.addRateLimited(req("a", "y")) // second failure: 2s
	clk.Step(time.Second)
	assert.Equal(t, 0, q.len())
	clk.Step(time.Second)
	assert.Equal(t, 1, q.len())
	q.forget(req("a", "y"))
	assert.Equal(t, time.Second, q.limiter.When(req("a", "y")), "forget resets the backoff")
}

func TestFairQueueShutDown(t *testing.T) {
	q, clk := newTestQueue()
	q.addAfter(req("a", "x"), time.Second)
	got := make(chan bool)
	go func() { _, ok := q.get(); got <- ok }() // joined below
	q.shutDown()
	assert.False(t, <-got, "a blocked get returns on shutdown")
	clk.Step(time.Second)
	q.add(req("a", "y"))
	_, ok := q.get()
	assert.False(t, ok, "nothing is queued after shutdown")
	assert.False(t, clk.HasWaiters(), "pending delays are stopped")
}

// TestFairQueueLimitsAClusterInFlight checks that a cluster whose request is
// being processed is skipped: a hanging cluster holds one worker, not all.
func TestFairQueueLimitsAClusterInFlight(t *testing.T) {
	q, _ := newTestQueue()
	q.add(req("hang", "1"))
	q.add(req("hang", "2"))
	q.add(req("ok", "1"))
	q.add(req("ok", "2"))
	first, _ := q.get()
	require.Equal(t, req("hang", "1"), first) // never done: it hangs
	assert.Equal(t, []Request{req("ok", "1"), req("ok", "2")}, getN(t, q, 2))
	got := make(chan Request)
	go func() { r, _ := q.get(); got <- r }() // joined below
	q.done(first)
	assert.Equal(t, req("hang", "2"), <-got)
}
