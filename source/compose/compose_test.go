package compose_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/compose"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func cluster(name, host string, lbls ...string) clusterregistry.Cluster {
	c := clusterregistry.Cluster{Name: name, Config: &rest.Config{Host: host}}
	if len(lbls) > 0 {
		c.Labels = map[string]string{}
		for i := 0; i+1 < len(lbls); i += 2 {
			c.Labels[lbls[i]] = lbls[i+1]
		}
	}
	return c
}

func static(clusters ...clusterregistry.Cluster) clusterregistry.ClusterSource {
	return clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) { return clusters, nil })
}

type got struct {
	Name string
	Host string
	Err  string
}

func summarize(clusters []clusterregistry.Cluster) []got {
	out := []got{}
	for _, c := range clusters {
		g := got{Name: c.Name}
		if c.Err != nil {
			g.Err = c.Err.Error()
		} else {
			g.Host = c.Config.Host
		}
		out = append(out, g)
	}
	return out
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name string
		give []clusterregistry.ClusterSource
		want []got
	}{
		{
			name: "nothing",
			give: nil,
			want: []got{},
		},
		{
			name: "disjoint sources, sorted",
			give: []clusterregistry.ClusterSource{static(cluster("b", "https://b")), static(cluster("a", "https://a"), cluster("c", "https://c"))},
			want: []got{{Name: "a", Host: "https://a"}, {Name: "b", Host: "https://b"}, {Name: "c", Host: "https://c"}},
		},
		{
			name: "a name in two sources is an error for that name only",
			give: []clusterregistry.ClusterSource{
				static(cluster("a", "https://a"), cluster("x", "https://x0")),
				static(cluster("b", "https://b")),
				static(cluster("x", "https://x2")),
			},
			want: []got{
				{Name: "a", Host: "https://a"},
				{Name: "b", Host: "https://b"},
				{Name: "x", Err: `source 0: field name: cluster "x" is also defined by source 2`},
			},
		},
		{
			name: "a name twice in one source is left to the Syncer",
			give: []clusterregistry.ClusterSource{static(cluster("x", "https://x1"), cluster("x", "https://x2"))},
			want: []got{{Name: "x", Host: "https://x1"}, {Name: "x", Host: "https://x2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusters, err := compose.Merge(tt.give...).List(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tt.want, summarize(clusters))
		})
	}
}

func TestMergeClashKeepsLabels(t *testing.T) {
	src := compose.Merge(static(cluster("x", "https://x0", "env", "prod")), static(cluster("x", "https://x1")))
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, clusters[0].Err, &fe)
	assert.Equal(t, map[string]string{"env": "prod"}, clusters[0].Labels)
}

func TestMergeKeepsTheLastListingOfAFailingSource(t *testing.T) {
	var fail atomic.Bool
	flaky := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		if fail.Load() {
			return nil, errors.New("database is down")
		}
		return []clusterregistry.Cluster{cluster("db", "https://db")}, nil
	})
	steady := clusterregistry.NewMemorySource(cluster("mem", "https://mem"))
	src := compose.Merge(steady, flaky)
	ctx := context.Background()

	_, err := src.List(ctx)
	require.NoError(t, err)

	fail.Store(true)
	steady.Upsert(cluster("mem2", "https://mem2"))
	clusters, err := src.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "db", Err: "source 1: field list: database is down; keeping its last listing"},
		{Name: "mem", Host: "https://mem"},
		{Name: "mem2", Host: "https://mem2"},
	}, summarize(clusters), "the other source's change comes through")
	assert.Equal(t, "https://db", clusters[0].Config.Host, "the last good config comes along")

	fail.Store(false)
	clusters, err = src.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, got{Name: "db", Host: "https://db"}, summarize(clusters)[0])
}

func TestMergeFailsWhenASourceNeverListed(t *testing.T) {
	broken := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		return nil, errors.New("no such table")
	})
	_, err := compose.Merge(static(cluster("a", "https://a")), broken).List(context.Background())
	assert.EqualError(t, err, "source 1: no such table")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = compose.Merge(static(cluster("a", "https://a"))).List(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestWatcherOnlyIfAPartIs(t *testing.T) {
	plain := static(cluster("a", "https://a"))
	mem := clusterregistry.NewMemorySource()
	tests := []struct {
		name string
		give clusterregistry.ClusterSource
		want bool
	}{
		{name: "merge of plain sources", give: compose.Merge(plain, plain), want: false},
		{name: "merge with a watcher", give: compose.Merge(plain, mem), want: true},
		{name: "filter of a plain source", give: compose.Filter(plain, compose.Names("a")), want: false},
		{name: "filter of a watcher", give: compose.Filter(mem, compose.Names("a")), want: true},
		{name: "filter of a merge with a watcher", give: compose.Filter(compose.Merge(plain, mem), compose.Names("a")), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok := tt.give.(clusterregistry.Watcher)
			assert.Equal(t, tt.want, ok)
		})
	}
}

func TestMergedWatchPassesChangesOn(t *testing.T) {
	one, two := clusterregistry.NewMemorySource(), clusterregistry.NewMemorySource()
	src := compose.Merge(one, static(), two).(clusterregistry.Watcher)
	ctx, cancel := context.WithCancel(context.Background())
	var changes atomic.Int64
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func() { changes.Add(1) }) }()

	// MemorySource calls only the watchers registered when it changes, so
	// keep changing until both watches are in place.
	require.Eventually(t, func() bool {
		before := changes.Load()
		one.Upsert(cluster("a", "https://a"))
		two.Upsert(cluster("b", "https://b"))
		return changes.Load()-before == 2
	}, 5*time.Second, time.Millisecond)

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return")
	}
}

// failingWatcher's Watch fails at once.
type failingWatcher struct{ clusterregistry.ClusterSource }

func (failingWatcher) Watch(context.Context, func()) error { return errors.New("watch refused") }

func TestMergedWatchStopsAllWhenOneFails(t *testing.T) {
	mem := clusterregistry.NewMemorySource()
	src := compose.Merge(mem, failingWatcher{static()}).(clusterregistry.Watcher)
	done := make(chan error, 1)
	go func() { done <- src.Watch(context.Background(), func() {}) }()
	select {
	case err := <-done:
		assert.EqualError(t, err, "source 1: watch refused")
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after a part failed")
	}
}

func TestFilter(t *testing.T) {
	src := static(
		cluster("a", "https://a", "env", "prod", "region", "eu"),
		cluster("b", "https://b", "env", "dev"),
		cluster("c", "https://c"),
	)
	prodOrDev, err := labels.Parse("env in (prod, dev)")
	require.NoError(t, err)
	tests := []struct {
		name string
		give func(clusterregistry.Cluster) bool
		want []string
	}{
		{name: "names", give: compose.Names("c", "a", "nope"), want: []string{"a", "c"}},
		{name: "no names", give: compose.Names(), want: []string{}},
		{name: "selector", give: compose.Selector(labels.SelectorFromSet(labels.Set{"env": "prod"})), want: []string{"a"}},
		{name: "set-based selector", give: compose.Selector(prodOrDev), want: []string{"a", "b"}},
		{name: "everything", give: compose.Selector(labels.Everything()), want: []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusters, err := compose.Filter(src, tt.give).List(context.Background())
			require.NoError(t, err)
			got := []string{}
			for _, c := range clusters {
				got = append(got, c.Name)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFilterPassesErrorsOn(t *testing.T) {
	broken := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		return nil, errors.New("down")
	})
	_, err := compose.Filter(broken, compose.Names("a")).List(context.Background())
	assert.EqualError(t, err, "down")
}

// TestSyncerOverAMerge runs a real Syncer over a merged and filtered source
// whose clock never moves: only the parts' watches make it sync again.
func TestSyncerOverAMerge(t *testing.T) {
	one := clusterregistry.NewMemorySource(cluster("a", "https://a", "env", "prod"))
	two := clusterregistry.NewMemorySource(cluster("b", "https://b", "env", "prod"), cluster("dev", "https://dev", "env", "dev"))
	src := compose.Filter(compose.Merge(one, two), compose.Selector(labels.SelectorFromSet(labels.Set{"env": "prod"})))
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
	}, clusterregistry.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.NoError(t, syncer.WaitForFirstSync(ctx))
	reg := syncer.Registry()
	assert.Equal(t, []string{"a", "b"}, reg.Snapshot().Names())

	require.Eventually(t, func() bool {
		two.Upsert(cluster("c", "https://c", "env", "prod"))
		return len(reg.Snapshot().Names()) == 3
	}, 5*time.Second, 10*time.Millisecond)

	one.Upsert(cluster("b", "https://b-too", "env", "prod"))
	require.Eventually(t, func() bool { return reg.Snapshot().Err("b") != nil }, 5*time.Second, time.Millisecond)
	h, err := reg.Get("b")
	require.NoError(t, err, "the clash keeps the last good client")
	assert.Equal(t, "https://b", h)
	assert.ErrorContains(t, reg.Snapshot().Err("b"), `cluster "b" is also defined by source 1`)
}
