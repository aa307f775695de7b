package clusterregistry_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSyncAddsUpdatesAndRemoves(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"), cluster("c", "https://c"))

	rep := f.sync(t)
	assert.Equal(t, []string{"a", "b", "c"}, rep.Added)
	assert.Equal(t, uint64(1), rep.Generation)
	assert.True(t, rep.Published)
	assert.Equal(t, []string{"a", "b", "c"}, f.reg.Snapshot().Names())
	oldB := f.client(t, "b")
	oldC := f.client(t, "c")

	f.src.Upsert(withToken(cluster("b", "https://b"), "rotated"))
	f.src.Delete("c")
	rep = f.sync(t)
	assert.Equal(t, []string{"b"}, rep.Updated)
	assert.Equal(t, []string{"c"}, rep.Removed)
	assert.Equal(t, 1, rep.Unchanged)
	assert.Equal(t, 1, rep.Builds)
	assert.Equal(t, uint64(2), rep.Generation)

	newB := f.client(t, "b")
	assert.Equal(t, "rotated", newB.token)
	assert.True(t, oldB.released.Load(), "replaced client is released")
	assert.True(t, oldC.released.Load(), "removed client is released")
	assert.False(t, newB.released.Load())
	_, err := f.reg.Get("c")
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
}

func TestUnchangedClusterIsNeverRebuilt(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	f.sync(t)
	a := f.client(t, "a")

	// A new but equal config (as a source that parses files makes every
	// time) is the same cluster.
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	rep := f.sync(t)
	assert.False(t, rep.Published, "nothing changed, nothing published")
	assert.Equal(t, uint64(1), rep.Generation)
	assert.Equal(t, 2, rep.Unchanged)
	assert.Zero(t, rep.Builds)
	assert.Equal(t, 2, f.builder.buildCount())
	assert.Same(t, a, f.client(t, "a"))
}

func TestLabelChangeRepublishesWithoutRebuild(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	a := f.client(t, "a")

	labeled := cluster("a", "https://a")
	labeled.Labels = map[string]string{"env": "prod"}
	f.src.Set(labeled)
	rep := f.sync(t)
	assert.True(t, rep.Published)
	assert.Zero(t, rep.Builds)
	assert.Same(t, a, f.client(t, "a"))
	info, ok := f.reg.Snapshot().Cluster("a")
	require.True(t, ok)
	assert.Equal(t, "prod", info.Labels["env"])
}

func TestRevisionDecidesChange(t *testing.T) {
	f := newFixture(t)
	c := cluster("a", "https://a")
	c.Revision = "1"
	f.src.Set(c)
	f.sync(t)

	// The same revision with another config: the source vouches for it.
	same := withToken(c, "other")
	f.src.Set(same)
	assert.Zero(t, f.sync(t).Builds)

	bumped := c
	bumped.Revision = "2"
	f.src.Set(bumped)
	assert.Equal(t, []string{"a"}, f.sync(t).Updated)
}

func TestLookupErrors(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("ok", "https://ok"), cluster("broken", "fail://broken"))
	f.sync(t)

	_, err := f.reg.Get("missing")
	require.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
	assert.Contains(t, err.Error(), `"missing"`)

	_, err = f.reg.Get("broken")
	var ce *clusterregistry.ClusterError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "broken", ce.Name)
	assert.Equal(t, 1, ce.Attempts)
	assert.NotErrorIs(t, err, clusterregistry.ErrClusterNotFound)
	assert.Error(t, f.reg.Snapshot().Err("broken"))
	assert.NoError(t, f.reg.Snapshot().Err("ok"))
	assert.ErrorIs(t, f.reg.Snapshot().Err("missing"), clusterregistry.ErrClusterNotFound)

	_, err = f.reg.Lease("missing")
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
	_, err = f.reg.Lease("broken")
	assert.ErrorAs(t, err, &ce)
}

func TestFailedRebuildKeepsLastGoodClient(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	f.sync(t)
	a := f.client(t, "a")

	f.src.Upsert(cluster("a", "fail://a"))
	rep := f.sync(t)
	assert.Equal(t, []string{"a"}, rep.Failed)
	assert.Empty(t, rep.Updated)
	assert.Same(t, a, f.client(t, "a"), "last good client keeps serving")
	assert.False(t, a.released.Load())

	var ce *clusterregistry.ClusterError
	require.ErrorAs(t, f.reg.Snapshot().Err("a"), &ce)
	assert.Contains(t, ce.Error(), "connection refused")
	info, _ := f.reg.Snapshot().Cluster("a")
	assert.True(t, info.Serving)
	assert.Error(t, info.Err)

	// Going back to the config of the serving client clears the error
	// without a build.
	f.src.Upsert(cluster("a", "https://a"))
	rep = f.sync(t)
	assert.Zero(t, rep.Builds)
	assert.NoError(t, f.reg.Snapshot().Err("a"))
	assert.Same(t, a, f.client(t, "a"))
}

func TestFailingClusterBacksOff(t *testing.T) {
	f := newFixture(t, clusterregistry.WithBackoff(time.Second, 10*time.Second))
	f.src.Set(cluster("a", "fail://a"), cluster("b", "https://b"))
	f.sync(t)
	require.Equal(t, 2, f.builder.buildCount())

	var ce *clusterregistry.ClusterError
	require.ErrorAs(t, f.reg.Snapshot().Err("a"), &ce)
	since := ce.Since
	assert.Equal(t, 1, ce.Attempts)
	assertBetween(t, ce.NextRetry.Sub(epoch), time.Second, 1200*time.Millisecond)

	// Before the retry time: no build, however often it syncs.
	f.clock.Step(900 * time.Millisecond)
	rep := f.sync(t)
	assert.Zero(t, rep.Builds)
	assert.False(t, rep.Published)
	assert.Equal(t, []string{"a"}, rep.Failed)

	// Delays double: 1s, 2s, 4s, 8s, then the 10s cap (each up to 20% more,
	// never past the cap).
	for attempt, base := range []time.Duration{2, 4, 8, 10, 10} {
		f.clock.SetTime(ce.NextRetry)
		rep = f.sync(t)
		assert.Equal(t, 1, rep.Builds, "attempt %d", attempt+2)
		require.ErrorAs(t, f.reg.Snapshot().Err("a"), &ce)
		assert.Equal(t, attempt+2, ce.Attempts)
		assert.Equal(t, since, ce.Since, "Since is the start of the run of failures")
		assertBetween(t, ce.NextRetry.Sub(f.clock.Now()), base*time.Second, min(base*1200*time.Millisecond, 10*time.Second))
	}

	// A changed description is built at once, whatever the backoff.
	f.src.Upsert(cluster("a", "https://a"))
	rep = f.sync(t)
	assert.Equal(t, []string{"a"}, rep.Added)
	assert.NoError(t, f.reg.Snapshot().Err("a"))
}

func assertBetween(t *testing.T, got, lo, hi time.Duration) {
	t.Helper()
	assert.GreaterOrEqual(t, got, lo)
	assert.LessOrEqual(t, got, hi)
}

func TestSourceErrorKeepsLastGoodState(t *testing.T) {
	var fail bool
	clusters := []clusterregistry.Cluster{cluster("a", "https://a"), cluster("b", "https://b")}
	src := clusterregistry.SourceFunc(func(context.Context) ([]clusterregistry.Cluster, error) {
		if fail {
			return nil, errBoom
		}
		return clusters, nil
	})
	b := newFakeBuilder()
	s, err := clusterregistry.NewSyncer[*fakeClient](src, b)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Sync(ctx)
	require.NoError(t, err)

	fail = true
	rep, err := s.Sync(ctx)
	require.ErrorIs(t, err, errBoom)
	assert.Contains(t, err.Error(), "list clusters")
	assert.Equal(t, []string{"a", "b"}, s.Registry().Snapshot().Names())
	snap := s.Registry().Snapshot()
	assert.ErrorIs(t, snap.SourceErr(), errBoom)
	assert.Equal(t, rep.Generation, snap.Generation())
	_, err = s.Registry().Get("a")
	assert.NoError(t, err)
	assert.Zero(t, b.releasedCount())

	// The same error again publishes nothing new.
	rep, _ = s.Sync(ctx)
	assert.False(t, rep.Published)

	fail = false
	rep, err = s.Sync(ctx)
	require.NoError(t, err)
	assert.True(t, rep.Published)
	assert.NoError(t, s.Registry().Snapshot().SourceErr())
	assert.Zero(t, rep.Builds)
}

func TestDefaultClusterRules(t *testing.T) {
	tests := []struct {
		name        string
		give        [][]clusterregistry.Cluster // listings, synced in order
		wantDefault string
		wantErr     error
		wantErrText string
	}{
		{
			name:    "none marked",
			give:    [][]clusterregistry.Cluster{{cluster("a", "https://a"), cluster("b", "https://b")}},
			wantErr: clusterregistry.ErrNoDefaultCluster,
		},
		{
			name:        "one marked",
			give:        [][]clusterregistry.Cluster{{cluster("a", "https://a"), asDefault(cluster("b", "https://b"))}},
			wantDefault: "b",
		},
		{
			name:        "two marked with no previous default",
			give:        [][]clusterregistry.Cluster{{asDefault(cluster("a", "https://a")), asDefault(cluster("b", "https://b"))}},
			wantErr:     clusterregistry.ErrNoDefaultCluster,
			wantErrText: `clusters ["a" "b"] are all marked default`,
		},
		{
			name: "two marked keeps the previous default",
			give: [][]clusterregistry.Cluster{
				{cluster("a", "https://a"), asDefault(cluster("b", "https://b"))},
				{asDefault(cluster("a", "https://a")), asDefault(cluster("b", "https://b"))},
			},
			wantDefault: "b",
			wantErr:     clusterregistry.ErrNoDefaultCluster,
			wantErrText: `clusters ["a" "b"] are all marked default`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			for _, listing := range tt.give {
				f.src.Set(listing...)
				f.sync(t)
			}
			snap := f.reg.Snapshot()
			name, err := snap.DefaultName()
			assert.Equal(t, tt.wantDefault, name)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				assert.ErrorContains(t, err, tt.wantErrText)
			} else {
				assert.NoError(t, err)
			}
			c, err := f.reg.Default()
			if tt.wantDefault == "" {
				assert.ErrorIs(t, err, tt.wantErr)
			} else if assert.NoError(t, err) {
				assert.Equal(t, tt.wantDefault, c.name)
			}
			// Every cluster stays reachable by name whatever the default.
			for _, n := range snap.Names() {
				_, err := snap.Get(n)
				assert.NoError(t, err)
			}
		})
	}
}

func TestDefaultClusterThatFailsToBuild(t *testing.T) {
	f := newFixture(t)
	f.src.Set(asDefault(cluster("home", "fail://home")), cluster("other", "https://other"))
	f.sync(t)

	name, err := f.reg.Snapshot().DefaultName()
	require.NoError(t, err)
	assert.Equal(t, "home", name)
	_, err = f.reg.Default()
	var ce *clusterregistry.ClusterError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "home", ce.Name)
	_, err = f.reg.Get("other")
	assert.NoError(t, err, "healthy clusters stay reachable")
}

func TestBadInputNamesClusterAndField(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("good", "https://good"))
	f.sync(t)
	good := f.client(t, "good")

	f.src.Set(
		cluster("good", "https://good"),
		clusterregistry.Cluster{Name: "", Config: &rest.Config{Host: "https://x"}},
		cluster("twice", "https://t1"), cluster("twice", "https://t2"),
		clusterregistry.Cluster{Name: "noconfig"},
		clusterregistry.Cluster{Name: "nohost", Config: &rest.Config{BearerToken: "secret-token"}},
		clusterregistry.Cluster{Name: "parsed", Err: &clusterregistry.FieldError{
			Location: "/etc/kube/config", Field: "contexts[parsed].cluster", Err: errors.New(`unknown cluster "x"`)}},
	)
	rep := f.sync(t)
	require.Len(t, rep.Invalid, 1)
	assert.EqualError(t, rep.Invalid[0], `cluster at index 0 (""): field name: must not be empty`)
	assert.Equal(t, []string{"noconfig", "nohost", "parsed", "twice"}, rep.Failed)

	wantErrs := map[string]string{
		"twice":    `cluster "twice": field name: listed 2 times`,
		"noconfig": `cluster "noconfig": field config: missing`,
		"nohost":   `cluster "nohost": field config.host: must not be empty`,
		"parsed":   `cluster "parsed": /etc/kube/config: field contexts[parsed].cluster: unknown cluster "x"`,
	}
	for name, want := range wantErrs {
		assert.EqualError(t, f.reg.Snapshot().Err(name), want)
	}
	assert.Same(t, good, f.client(t, "good"), "other clusters carry on")

	// The same bad input again is nothing new.
	assert.False(t, f.sync(t).Published)
}

func TestSnapshotIsConsistentAndNeverChanges(t *testing.T) {
	f := newFixture(t)
	f.src.Set(asDefault(cluster("a", "https://a")), cluster("b", "fail://b"))
	f.sync(t)
	snap := f.reg.Snapshot()

	f.src.Set(cluster("c", "https://c"))
	f.sync(t)

	assert.Equal(t, uint64(1), snap.Generation())
	assert.Equal(t, []string{"a", "b"}, snap.Names())
	assert.Equal(t, 2, snap.Len())
	name, err := snap.DefaultName()
	require.NoError(t, err)
	assert.Equal(t, "a", name)
	var serving []string
	for n, c := range snap.All() {
		serving = append(serving, n)
		assert.Equal(t, n, c.name)
	}
	assert.Equal(t, []string{"a"}, serving)
	var failing []string
	for ci := range snap.Clusters() {
		var ce *clusterregistry.ClusterError
		if errors.As(ci.Err, &ce) {
			failing = append(failing, ci.Name)
			assert.Equal(t, ci.Name, ce.Name)
		}
	}
	assert.Equal(t, []string{"b"}, failing)
	var infos []clusterregistry.ClusterInfo
	for ci := range snap.Clusters() {
		infos = append(infos, ci)
	}
	require.Len(t, infos, 2)
	assert.True(t, infos[0].Default)
	assert.True(t, infos[0].Serving)
	assert.Equal(t, uint64(1), infos[0].BuiltGeneration)
	assert.False(t, infos[1].Serving)

	now := f.reg.Snapshot()
	assert.Equal(t, uint64(2), now.Generation())
	assert.Equal(t, []string{"c"}, now.Names())

	// Names is the caller's to change.
	names := now.Names()
	names[0] = "changed"
	assert.Equal(t, []string{"c"}, now.Names())

	var zero clusterregistry.Snapshot[*fakeClient]
	assert.Zero(t, zero.Len())
	_, err = zero.Get("a")
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
}

func TestLeaseDelaysRelease(t *testing.T) {
	f := newFixture(t, clusterregistry.WithDrainTimeout(time.Minute))
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)

	lease, err := f.reg.Lease("a")
	require.NoError(t, err)
	old := lease.Client()
	assert.Equal(t, "a", lease.Name())

	f.src.Set(withToken(cluster("a", "https://a"), "rotated"))
	f.sync(t)
	assert.NotSame(t, old, f.client(t, "a"), "the new client serves at once")
	assert.False(t, old.released.Load(), "a leased client is not released")

	lease.Release()
	lease.Release() // a second call does nothing
	require.Eventually(t, old.released.Load, 10*time.Second, time.Millisecond)
}

func TestLeaseDrainTimeout(t *testing.T) {
	f := newFixture(t, clusterregistry.WithDrainTimeout(time.Minute))
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	lease, err := f.reg.Lease("a")
	require.NoError(t, err)
	defer lease.Release()

	f.src.Delete("a")
	f.sync(t)
	f.waitForTimer(t) // the drain timer
	f.clock.Step(59 * time.Second)
	assert.False(t, lease.Client().released.Load())
	f.clock.Step(time.Second)
	require.Eventually(t, lease.Client().released.Load, 10*time.Second, time.Millisecond)
}

func TestLeaseDefault(t *testing.T) {
	f := newFixture(t)
	f.src.Set(asDefault(cluster("a", "https://a")))
	f.sync(t)
	lease, err := f.reg.LeaseDefault()
	require.NoError(t, err)
	assert.Equal(t, "a", lease.Client().name)
	lease.Release()

	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	_, err = f.reg.LeaseDefault()
	assert.ErrorIs(t, err, clusterregistry.ErrNoDefaultCluster)
}

func TestOptionsAreValidated(t *testing.T) {
	tests := []struct {
		name string
		give clusterregistry.Option
		want string
	}{
		{"interval", clusterregistry.WithInterval(0), "interval must be positive"},
		{"concurrency", clusterregistry.WithConcurrency(0), "concurrency must be at least 1"},
		{"build timeout", clusterregistry.WithBuildTimeout(-time.Second), "build timeout must be positive"},
		{"source timeout", clusterregistry.WithSourceTimeout(0), "source timeout must be positive"},
		{"backoff", clusterregistry.WithBackoff(time.Minute, time.Second), "backoff max 1s is below backoff base 1m0s"},
		{"drain", clusterregistry.WithDrainTimeout(0), "drain timeout must be positive"},
		{"clock", clusterregistry.WithClock(nil), "clock must not be nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(), newFakeBuilder(), tt.give)
			assert.ErrorContains(t, err, tt.want)
		})
	}
	_, err := clusterregistry.NewSyncer[*fakeClient](nil, newFakeBuilder())
	assert.ErrorContains(t, err, "source")
	_, err = clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(), nil)
	assert.ErrorContains(t, err, "builder")
}

func TestDuplicateNamesInAnUnsortedListing(t *testing.T) {
	listing := []clusterregistry.Cluster{cluster("b", "https://b"), cluster("a", "https://a"), cluster("b", "https://b2")}
	s, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.SourceFunc(
		func(context.Context) ([]clusterregistry.Cluster, error) { return listing, nil }), newFakeBuilder())
	require.NoError(t, err)
	rep, err := s.Sync(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, rep.Added)
	assert.Equal(t, []string{"b"}, rep.Failed)
	assert.EqualError(t, s.Registry().Snapshot().Err("b"), `cluster "b": field name: listed 2 times`)
}

func TestProxyURLChangeRebuilds(t *testing.T) {
	f := newFixture(t)
	withProxy := func(u string) clusterregistry.Cluster {
		c := cluster("a", "https://a")
		pu, err := url.Parse(u)
		require.NoError(t, err)
		c.Config.Proxy = http.ProxyURL(pu)
		return c
	}
	f.src.Set(withProxy("http://proxy-1:3128"))
	f.sync(t)
	f.src.Set(withProxy("http://proxy-1:3128"))
	assert.Zero(t, f.sync(t).Builds, "the same proxy")
	f.src.Set(withProxy("http://proxy-2:3128"))
	assert.Equal(t, []string{"a"}, f.sync(t).Updated, "another proxy from the same code")
}

// TestEveryReadSeesTheSameClient checks that Get, a Snapshot's Get and All,
// and Lease agree on a cluster's client after it was added, updated and
// failed to update: the member keeps its client beside the handle.
func TestEveryReadSeesTheSameClient(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("a", "https://a"))
	check := func(want *fakeClient) {
		t.Helper()
		got, err := f.reg.Get("a")
		require.NoError(t, err)
		assert.Same(t, want, got, "Get")
		snap := f.reg.Snapshot()
		got, err = snap.Get("a")
		require.NoError(t, err)
		assert.Same(t, want, got, "Snapshot.Get")
		for name, c := range snap.All() {
			assert.Same(t, want, c, "Snapshot.All: %s", name)
		}
		lease, err := f.reg.Lease("a")
		require.NoError(t, err)
		assert.Same(t, want, lease.Client(), "Lease")
		lease.Release()
	}
	f.sync(t)
	first := f.client(t, "a")
	check(first)

	f.src.Set(withToken(cluster("a", "https://a"), "rotated"))
	f.sync(t)
	second := f.client(t, "a")
	require.NotSame(t, first, second)
	check(second)

	f.src.Set(cluster("a", "fail-a")) // its rebuild fails
	rep := f.sync(t)
	require.Equal(t, []string{"a"}, rep.Failed)
	check(second) // the last good client
}
