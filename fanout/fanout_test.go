package fanout_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fanout"
)

// liveness bounds how long a test waits for something that must happen
// without any wait of the fan-out's own; it fails a hung test, it measures
// nothing.
const liveness = 30 * time.Second

func receive[V any](t *testing.T, ch <-chan V, what string) V {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(liveness):
		t.Fatalf("no %s after %v", what, liveness)
		panic("unreachable")
	}
}

// forward runs the iterator in a goroutine and sends each Result on the
// returned channel, which it closes when the iterator returns.
func forward[R any](seq func(func(fanout.Result[R]) bool)) <-chan fanout.Result[R] {
	out := make(chan fanout.Result[R], 100)
	// Joined by the test reading the channel until it is closed.
	go func() {
		defer close(out)
		for r := range seq {
			out <- r
		}
	}()
	return out
}

func TestEachBlackHoledClusterCostsAtMostItsDeadline(t *testing.T) {
	servers := map[string]*clusterregistrytest.Server{}
	source := clusterregistrytest.NewSource()
	for _, name := range []string{"a", "b", "dead"} {
		servers[name] = clusterregistrytest.NewServer(t)
		source.Upsert(servers[name].Cluster(name))
	}
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistry.ClientBuilder{})
	servers["dead"].BlackHole()

	clk := testingclock.NewFakeClock(time.Now())
	started := make(chan string, 3)
	list := func(ctx context.Context, name string, c *clusterregistry.Client) (int, error) {
		started <- name
		ns, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(ns.Items), nil
	}
	const deadline = 2 * time.Second
	results := forward(fanout.Each(context.Background(), syncer.Registry(), list,
		fanout.WithTimeout(deadline), fanout.WithClock(clk)))

	for range 3 {
		receive(t, started, "call start")
	}
	// The live clusters answer with the fake clock standing still: nobody
	// waits for the dead one.
	got := map[string]fanout.Result[int]{}
	for range 2 {
		r := receive(t, results, "result of a live cluster")
		got[r.Name] = r
	}
	require.Contains(t, got, "a")
	require.Contains(t, got, "b")
	assert.NoError(t, got["a"].Err)
	assert.Equal(t, 1, got["a"].Value)

	// At the deadline the dead cluster's result comes, and the iterator ends.
	clk.Step(deadline)
	dead := receive(t, results, "result of the black-holed cluster")
	assert.Equal(t, "dead", dead.Name)
	assert.ErrorIs(t, dead.Err, context.DeadlineExceeded)
	assert.ErrorContains(t, dead.Err, `cluster "dead"`)
	assert.Equal(t, deadline, dead.Took)
	ended(t, results)
}

// ended fails t unless the iterator behind ch ends with no further result.
func ended[R any](t *testing.T, ch <-chan fanout.Result[R]) {
	t.Helper()
	select {
	case r, ok := <-ch:
		assert.False(t, ok, "a result after the last: %+v", r)
	case <-time.After(liveness):
		t.Fatalf("the iterator did not return after %v", liveness)
	}
}

// fleet starts a Syncer over FakeBuilder clients called names.
func fleet(t *testing.T, names ...string) (*clusterregistrytest.Source, *clusterregistrytest.FakeBuilder, *clusterregistry.Syncer[*clusterregistrytest.FakeClient]) {
	builder := clusterregistrytest.NewFakeBuilder()
	t.Cleanup(func() { builder.CheckReleased(t) })
	source := clusterregistrytest.NewSource()
	for _, n := range names {
		source.Upsert(clusterregistrytest.NewCluster(n))
	}
	return source, builder, clusterregistrytest.StartSyncer(t, source, builder)
}

func TestEachAbandonsAFuncThatIgnoresItsContextAndKeepsItsLease(t *testing.T) {
	source, builder, syncer := fleet(t, "slow")
	clk := testingclock.NewFakeClock(time.Now())
	started, unblock, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	stubborn := func(_ context.Context, _ string, c *clusterregistrytest.FakeClient) (bool, error) {
		close(started)
		<-unblock // ignores its context
		defer close(returned)
		return c.Released(), nil
	}
	results := forward(fanout.Each(context.Background(), syncer.Registry(), stubborn,
		fanout.WithTimeout(time.Second), fanout.WithClock(clk)))
	receive(t, started, "call start")
	clk.Step(time.Second)
	r := receive(t, results, "result at the deadline")
	assert.ErrorIs(t, r.Err, context.DeadlineExceeded)
	ended(t, results)

	// Removed from the Registry while the abandoned call still runs: its
	// client waits for the call's Lease.
	client := builder.Client("slow")
	source.Delete("slow")
	clusterregistrytest.Sync(t, syncer)
	assert.False(t, client.Released(), "released while the abandoned call still uses it")

	close(unblock)
	receive(t, returned, "return of the abandoned call")
	require.Eventually(t, client.Released, liveness, time.Millisecond,
		"the abandoned call's Lease was never released")
}

func TestCancelledFanOutLeavesNoGoroutine(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	names := []string{"a", "b", "c", "d", "e"}
	source := clusterregistrytest.NewSource()
	for _, n := range names {
		source.Upsert(clusterregistrytest.NewCluster(n))
	}
	syncer, err := clusterregistry.NewSyncer(source, builder)
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, len(names))
	wait := func(ctx context.Context, name string, _ *clusterregistrytest.FakeClient) (int, error) {
		started <- name
		<-ctx.Done()
		return 0, ctx.Err()
	}
	results := forward(fanout.Each(ctx, syncer.Registry(), wait, fanout.WithConcurrency(2)))
	receive(t, started, "first call")
	receive(t, started, "second call")
	cancel()
	var got []fanout.Result[int]
	for r := range results {
		got = append(got, r)
	}
	require.Len(t, got, len(names), "every cluster gets a result, started or not")
	for _, r := range got {
		assert.ErrorIs(t, r.Err, context.Canceled, r.Name)
	}

	require.NoError(t, syncer.Close())
	builder.CheckReleased(t)
	clusterregistrytest.VerifyNone(t)
}

func TestBreakingOutOfEachCancelsTheRest(t *testing.T) {
	_, _, syncer := fleet(t, "a", "b", "c")
	cancelled := make(chan string, 3)
	fn := func(ctx context.Context, name string, _ *clusterregistrytest.FakeClient) (string, error) {
		if name == "a" {
			return name, nil
		}
		<-ctx.Done()
		cancelled <- name
		return "", ctx.Err()
	}
	for r := range fanout.Each(context.Background(), syncer.Registry(), fn) {
		assert.Equal(t, "a", r.Name)
		break
	}
	receive(t, cancelled, "cancel of a call in progress")
	receive(t, cancelled, "cancel of a call in progress")
}

func TestCollectSelectsAndReportsErrors(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Fail("broken", errors.New("no route to host"))
	source := clusterregistrytest.NewSource()
	for _, n := range []string{"prod-eu", "prod-us", "staging", "broken"} {
		c := clusterregistrytest.NewCluster(n)
		c.Labels = map[string]string{"env": n[:4]}
		source.Upsert(c)
	}
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	name := func(_ context.Context, name string, _ *clusterregistrytest.FakeClient) (string, error) {
		return name, nil
	}
	tests := []struct {
		name string
		give []fanout.Option
		want []string
	}{
		{name: "all", want: []string{"broken", "prod-eu", "prod-us", "staging"}},
		{name: "names", give: []fanout.Option{fanout.WithNames("staging", "prod-us", "gone")}, want: []string{"prod-us", "staging"}},
		{name: "selector", give: []fanout.Option{fanout.WithSelector(labels.SelectorFromSet(labels.Set{"env": "prod"}))}, want: []string{"prod-eu", "prod-us"}},
		{name: "both", give: []fanout.Option{fanout.WithSelector(labels.SelectorFromSet(labels.Set{"env": "prod"})), fanout.WithNames("prod-eu")}, want: []string{"prod-eu"}},
		{name: "nil options", give: []fanout.Option{nil, fanout.WithFilter(nil), fanout.WithSelector(nil), fanout.WithClock(nil)}, want: []string{"broken", "prod-eu", "prod-us", "staging"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range fanout.Collect(context.Background(), syncer.Registry(), name, tt.give...) {
				got = append(got, r.Name)
			}
			assert.Equal(t, tt.want, got)
		})
	}

	broken := fanout.Collect(context.Background(), syncer.Registry(), name, fanout.WithNames("broken"))
	require.Len(t, broken, 1)
	var cerr *clusterregistry.ClusterError
	assert.ErrorAs(t, broken[0].Err, &cerr, "a cluster with no client reports its build error")
	assert.Empty(t, broken[0].Value)
}

func TestNilInputsYieldNothing(t *testing.T) {
	_, _, syncer := fleet(t, "a")
	assert.Empty(t, fanout.Collect[*clusterregistrytest.FakeClient, int](context.Background(), nil, nil))
	assert.Empty(t, fanout.Collect[*clusterregistrytest.FakeClient, int](context.Background(), syncer.Registry(), nil))
}

func seedPods(b *clusterregistrytest.FakeBuilder, cluster string, n int) {
	for i := range n {
		b.Seed(cluster, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: cluster + "-" + string(rune('a'+i))}})
	}
}

func TestAnEndedContextStartsNoCall(t *testing.T) {
	_, _, syncer := fleet(t, "a", "b", "c")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fn := func(context.Context, string, *clusterregistrytest.FakeClient) (int, error) {
		t.Error("called after the fan-out's context ended")
		return 0, nil
	}
	results := fanout.Collect(ctx, syncer.Registry(), fn)
	require.Len(t, results, 3)
	for _, r := range results {
		assert.ErrorIs(t, r.Err, context.Canceled)
		assert.ErrorContains(t, r.Err, `cluster "`+r.Name+`"`)
	}
}
