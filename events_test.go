package clusterregistry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
)

// drain returns the events queued for sub, without waiting for more.
func drain(t *testing.T, sub *clusterregistry.Subscription) []clusterregistry.Event {
	t.Helper()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	var out []clusterregistry.Event
	for {
		ev, err := sub.Next(done)
		if err != nil {
			if !errors.Is(err, clusterregistry.ErrStopped) {
				require.ErrorIs(t, err, context.Canceled)
			}
			return out
		}
		out = append(out, ev)
	}
}

type evKey struct {
	Type    clusterregistry.EventType
	Cluster string
	Gen     uint64
	Replay  bool
}

func keys(events []clusterregistry.Event) []evKey {
	var out []evKey
	for _, ev := range events {
		out = append(out, evKey{ev.Type, ev.Name, ev.Generation, ev.Replay})
	}
	return out
}

func TestSubscribeReplaysTheStateThenDeliversChangesInOrder(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"), cluster("broken", "fail://broken"))
	f.sync(t)

	sub := f.reg.Subscribe()
	defer sub.Close()
	assert.Equal(t, []evKey{
		{clusterregistry.EventAdded, "a", 1, true},
		{clusterregistry.EventAdded, "b", 1, true},
		{clusterregistry.EventFailed, "broken", 1, true},
	}, keys(drain(t, sub)))

	f.src.Set(withToken(cluster("b", "https://b"), "new"), cluster("broken", "https://broken"))
	f.sync(t)
	f.src.Upsert(cluster("b", "fail://b"))
	f.sync(t)
	events := drain(t, sub)
	assert.Equal(t, []evKey{
		{clusterregistry.EventRemoved, "a", 2, false},
		{clusterregistry.EventUpdated, "b", 2, false},
		{clusterregistry.EventAdded, "broken", 2, false},
		{clusterregistry.EventRecovered, "broken", 2, false},
		{clusterregistry.EventFailed, "b", 3, false},
	}, keys(events))
	assert.ErrorContains(t, events[4].Err, `cluster "b"`)

	// A sync that changes nothing sends nothing.
	f.sync(t)
	assert.Empty(t, drain(t, sub))
}

func TestSlowSubscriberIsResyncedAndBlocksNobody(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	slow := f.reg.Subscribe() // never reads until the end
	defer slow.Close()
	fast := f.reg.Subscribe()
	defer fast.Close()

	const rounds = 1500
	fastEvents := 0
	for i := range rounds {
		f.src.Set(withToken(cluster("a", "https://a"), fmt.Sprint(i)), cluster(fmt.Sprintf("c%d", i%3), "https://c"))
		f.sync(t)
		fastEvents += len(drain(t, fast))
	}
	assert.Greater(t, fastEvents, rounds, "the fast subscriber saw every change")

	events := drain(t, slow)
	require.NotEmpty(t, events)
	assert.Equal(t, clusterregistry.EventResync, events[0].Type)
	// After the resync: the state replayed, then the changes since.
	assert.Less(t, len(events), 1024+10)
	assert.Equal(t, applyEvents(nil, events), clusterSet(f.reg.Snapshot()))
}

func TestCloseEndsTheSubscription(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	sub := f.reg.Subscribe()
	sub.Close()
	sub.Close()
	_, err := sub.Next(context.Background())
	assert.ErrorIs(t, err, clusterregistry.ErrUnsubscribed)

	// A Next blocked in another goroutine wakes up too.
	sub2 := f.reg.Subscribe()
	drain(t, sub2)
	errc := make(chan error, 1)
	go func() { _, err := sub2.Next(context.Background()); errc <- err }()
	sub2.Close()
	assert.ErrorIs(t, <-errc, clusterregistry.ErrUnsubscribed)
}

func TestRunStopRemovesEveryCluster(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.syncer.Run(ctx) }()
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
	sub := f.reg.Subscribe()
	defer sub.Close()
	cancel()
	require.NoError(t, <-done)
	events := drain(t, sub)
	assert.Equal(t, map[string]bool{}, applyEvents(nil, events))
}

// TestSubscribersComeAndGoDuringSyncs checks under -race that every
// subscriber's events, applied to what it started with, give exactly the
// Registry's final state: no gap and no overlap between replay and changes.
func TestSubscribersComeAndGoDuringSyncs(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("seed", "https://seed"))
	f.sync(t)

	ctx, syncsOver := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	results := make(chan map[string]bool, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				sub := f.reg.Subscribe()
				model := map[string]bool{}
				var err error
				for j := 0; j < 20+w+i%7 && err == nil; j++ {
					var ev clusterregistry.Event
					// Queued events come first; the error only when none is left.
					if ev, err = sub.Next(ctx); err == nil {
						model = applyEvents(model, []clusterregistry.Event{ev})
					}
				}
				sub.Close() // come and go
				if err != nil {
					results <- model
					return
				}
			}
		})
	}
	for i := range 600 {
		var cs []clusterregistry.Cluster
		for j := range 12 {
			if (i+j)%4 != 0 {
				cs = append(cs, withToken(cluster(fmt.Sprintf("c%d", j), "https://c"), fmt.Sprint(i/3)))
			}
		}
		f.src.Set(cs...)
		f.sync(t)
	}
	syncsOver()
	wg.Wait()
	close(results)
	want := clusterSet(f.reg.Snapshot())
	n := 0
	for got := range results {
		assert.Equal(t, want, got)
		n++
	}
	assert.Equal(t, 4, n)
}

// applyEvents folds events into the set of clusters that have a client.
func applyEvents(model map[string]bool, events []clusterregistry.Event) map[string]bool {
	if model == nil {
		model = map[string]bool{}
	}
	for _, ev := range events {
		switch ev.Type {
		case clusterregistry.EventResync:
			clear(model)
		case clusterregistry.EventAdded, clusterregistry.EventUpdated:
			model[ev.Name] = true
		case clusterregistry.EventRemoved:
			delete(model, ev.Name)
		}
	}
	return model
}

func clusterSet[T any](snap clusterregistry.Snapshot[T]) map[string]bool {
	out := map[string]bool{}
	for name := range snap.All() {
		out[name] = true
	}
	return out
}

// reasoned is a source that filters another and says why.
type reasoned struct {
	*clusterregistry.MemorySource
	why map[string]string
}

func (r reasoned) Reason(name string) string { return r.why[name] }

func TestAReasonersReasonsReachTheAddedAndRemovedEvents(t *testing.T) {
	src := reasoned{clusterregistry.NewMemorySource(cluster("a", "https://a"), cluster("b", "https://b")),
		map[string]string{"a": "moved here", "b": "stays"}}
	s, err := clusterregistry.NewSyncer[*fakeClient](src, newFakeBuilder())
	require.NoError(t, err)
	defer s.Close()
	sub := s.Registry().Subscribe()
	defer sub.Close()
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	src.Delete("a")
	src.why["a"] = "moved away"
	src.Upsert(cluster("b", "https://b2")) // an update: no reason asked
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	var got []string
	for _, ev := range drain(t, sub) {
		got = append(got, fmt.Sprintf("%s %s %q", ev.Type, ev.Name, ev.Reason))
	}
	assert.Equal(t, []string{
		`Added a "moved here"`, `Added b "stays"`,
		`Removed a "moved away"`, `Updated b ""`,
	}, got)
}
