package clusterregistry_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
)

// scriptedProber answers each cluster's probes with the error set for it;
// a cluster set to block waits for its context.
type scriptedProber struct {
	mu      sync.Mutex
	answers map[string]error
	block   map[string]bool
	probes  atomic.Int32
}

func (p *scriptedProber) set(name string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[name] = err
}

func (p *scriptedProber) Probe(ctx context.Context, c *fakeClient) error {
	p.probes.Add(1)
	p.mu.Lock()
	err, block := p.answers[c.name], p.block[c.name]
	p.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

var errRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func unauthorized() error {
	return apierrors.NewUnauthorized("the server has asked for the client to provide credentials")
}

func TestHealthThresholds(t *testing.T) {
	p := &scriptedProber{answers: map[string]error{}}
	f := newProbedFixture(t, p, clusterregistry.HealthCheck{FailureThreshold: 3, SuccessThreshold: 2})
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	sub := f.reg.Subscribe()
	defer sub.Close()
	drain(t, sub)
	ctx := context.Background()

	h, err := f.reg.Health("a")
	require.NoError(t, err)
	assert.Equal(t, clusterregistry.HealthUnknown, h.State, "not probed yet")

	steps := []struct {
		give      error
		want      clusterregistry.HealthState
		wantEvent clusterregistry.EventType
	}{
		{nil, clusterregistry.HealthReady, ""}, // the first answer decides
		{errRefused, clusterregistry.HealthReady, ""},
		{errRefused, clusterregistry.HealthReady, ""},
		{errRefused, clusterregistry.HealthUnreachable, clusterregistry.EventUnhealthy},
		{unauthorized(), clusterregistry.HealthUnauthorized, clusterregistry.EventUnhealthy}, // already failing: the cause shows at once
		{nil, clusterregistry.HealthUnauthorized, ""},
		{nil, clusterregistry.HealthReady, clusterregistry.EventHealthy},
		{fmtNotReady(), clusterregistry.HealthReady, ""},
	}
	for i, st := range steps {
		p.set("a", st.give)
		f.clock.Step(time.Second)
		require.NoError(t, f.syncer.Probe(ctx))
		h, _ := f.reg.Health("a")
		assert.Equal(t, st.want, h.State, "step %d", i)
		assert.Equal(t, f.clock.Now(), h.LastProbe)
		if st.give != nil {
			assert.Error(t, h.Err)
		}
		events := drain(t, sub)
		if st.wantEvent == "" {
			assert.Empty(t, events, "step %d", i)
			continue
		}
		require.Len(t, events, 1, "step %d", i)
		assert.Equal(t, st.wantEvent, events[0].Type)
		assert.Equal(t, st.want, events[0].Health.State)
		assert.Equal(t, f.clock.Now(), events[0].Health.Since)
	}
	info, _ := f.reg.Snapshot().Cluster("a")
	assert.Equal(t, clusterregistry.HealthReady, info.Health.State)
	assert.Equal(t, 1, info.Health.Failures)
}

func fmtNotReady() error {
	return errors.Join(clusterregistry.ErrNotReady, errors.New("etcd check failed"))
}

func TestUnauthorizedProbesTriggerAtMostOncePerBackoff(t *testing.T) {
	var lists atomic.Int32
	mem := clusterregistry.NewMemorySource(cluster("a", "https://a"))
	src := clusterregistry.SourceFunc(func(ctx context.Context) ([]clusterregistry.Cluster, error) {
		lists.Add(1)
		return mem.List(ctx)
	})
	p := &scriptedProber{answers: map[string]error{"a": unauthorized()}}
	clk := clocktesting.NewFakeClock(epoch)
	b := newFakeBuilder()
	b.prober = p
	s, err := clusterregistry.NewSyncer[*fakeClient](src, b, clusterregistry.WithClock(clk),
		clusterregistry.WithInterval(time.Hour), clusterregistry.WithBackoff(10*time.Second, time.Minute),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{Interval: time.Hour}))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.NoError(t, s.WaitForFirstSync(ctx))

	// Run's own probe round (after the first sync) asks for one re-read.
	require.Eventually(t, func() bool { return p.probes.Load() >= 1 && lists.Load() == 2 }, 10*time.Second, time.Millisecond)
	for range 5 {
		require.NoError(t, s.Probe(ctx))
	}
	clk.Step(9 * time.Second)
	require.NoError(t, s.Probe(ctx))
	// A sync the trigger might have started must be visible by now.
	_, err = s.Sync(ctx)
	require.NoError(t, err)
	assert.Equal(t, int32(3), lists.Load(), "401s within the backoff ask for nothing more")

	clk.Step(3 * time.Second) // past the backoff with its jitter
	require.NoError(t, s.Probe(ctx))
	require.Eventually(t, func() bool { return lists.Load() == 4 }, 10*time.Second, time.Millisecond)
}

func TestProbeTimesOutAndNeverBlocksASync(t *testing.T) {
	p := &scriptedProber{answers: map[string]error{}, block: map[string]bool{"hole": true}}
	f := newProbedFixture(t, p, clusterregistry.HealthCheck{Timeout: 5 * time.Second, FailureThreshold: 1})
	f.src.Set(cluster("hole", "https://hole"), cluster("ok", "https://ok"))
	f.sync(t)

	probed := make(chan error, 1)
	go func() { probed <- f.syncer.Probe(context.Background()) }()
	require.Eventually(t, func() bool { return p.probes.Load() == 2 && f.clock.Waiters() == 1 }, 10*time.Second, time.Millisecond)

	// A sync runs to the end while a probe hangs.
	f.src.Upsert(cluster("new", "https://new"))
	assert.Equal(t, []string{"new"}, f.sync(t).Added)

	f.clock.Step(5 * time.Second)
	require.NoError(t, <-probed)
	h, _ := f.reg.Health("hole")
	assert.Equal(t, clusterregistry.HealthUnreachable, h.State)
	h, _ = f.reg.Health("ok")
	assert.Equal(t, clusterregistry.HealthReady, h.State)
	h, _ = f.reg.Health("new")
	assert.Equal(t, clusterregistry.HealthUnknown, h.State, "not probed yet")
	_, err := f.reg.Health("missing")
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
}

func TestRunProbesOnItsInterval(t *testing.T) {
	p := &scriptedProber{answers: map[string]error{}}
	f := newProbedFixture(t, p, clusterregistry.HealthCheck{Interval: 10 * time.Second}, clusterregistry.WithInterval(time.Hour))
	f.src.Set(cluster("a", "https://a"))
	f.run(t)
	require.Eventually(t, func() bool { return p.probes.Load() == 1 }, 10*time.Second, time.Millisecond)
	for i := range 3 {
		require.Eventually(t, func() bool { return f.clock.Waiters() == 2 }, 10*time.Second, time.Millisecond) // sync and probe timers
		f.clock.Step(10 * time.Second)
		require.Eventually(t, func() bool { return p.probes.Load() == int32(i+2) }, 10*time.Second, time.Millisecond)
	}
}

func TestHealthCheckNeedsABuilderThatProbes(t *testing.T) {
	fb := newFakeBuilder()
	noProbe := clusterregistry.BuilderFuncs[*fakeClient]{BuildFunc: fb.Build}
	_, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(), noProbe,
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{}))
	assert.ErrorContains(t, err, "is not a Prober of *clusterregistry_test.fakeClient")

	noProbe.ProbeFunc = fb.Probe
	s, err := clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(), noProbe,
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{}))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s, err = clusterregistry.NewSyncer[*fakeClient](clusterregistry.NewMemorySource(), newFakeBuilder())
	require.NoError(t, err)
	assert.Error(t, s.Probe(context.Background()), "no health check configured")
}

func TestClientBuilderProbesAnAPIServer(t *testing.T) {
	srv := newTestAPIServer(t, "tok")
	c, err := clusterregistry.ClientBuilder{}.Build(context.Background(), clusterregistry.Cluster{Name: "x", Config: srv.config("tok")})
	require.NoError(t, err)
	defer clusterregistry.ClientBuilder{}.Release(c)

	tests := []struct {
		name   string
		readyz int32
		token  string
		want   clusterregistry.HealthState
	}{
		{"ready", 0, "tok", clusterregistry.HealthReady},
		{"not ready", http.StatusInternalServerError, "tok", clusterregistry.HealthNotReady},
		{"no readyz, falls back to version", http.StatusNotFound, "tok", clusterregistry.HealthReady},
		{"rotated away", 0, "other", clusterregistry.HealthUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.readyz.Store(tt.readyz)
			srv.mu.Lock()
			srv.tokens = map[string]bool{tt.token: true}
			srv.mu.Unlock()
			err := clusterregistry.ClientBuilder{}.Probe(context.Background(), c)
			got := clusterregistry.HealthReady
			switch {
			case err == nil:
			case apierrors.IsUnauthorized(err):
				got = clusterregistry.HealthUnauthorized
			case errors.Is(err, clusterregistry.ErrNotReady):
				got = clusterregistry.HealthNotReady
			default:
				got = clusterregistry.HealthUnreachable
			}
			assert.Equal(t, tt.want, got, "%v", err)
		})
	}
}

// countingObserver counts what it is told.
type countingObserver struct {
	clusterregistry.NopObserver
	syncs, builds, probes, changes atomic.Int32
}

func (o *countingObserver) SyncDone(clusterregistry.SyncReport, error) { o.syncs.Add(1) }
func (o *countingObserver) BuildDone(string, time.Duration, error)     { o.builds.Add(1) }
func (o *countingObserver) ProbeDone(string, time.Duration, error)     { o.probes.Add(1) }
func (o *countingObserver) HealthChanged(string, clusterregistry.Health, clusterregistry.Health) {
	o.changes.Add(1)
}

func TestObserverSeesSyncsBuildsAndProbes(t *testing.T) {
	o := &countingObserver{}
	p := &scriptedProber{answers: map[string]error{}}
	f := newProbedFixture(t, p, clusterregistry.HealthCheck{FailureThreshold: 1}, clusterregistry.WithObserver(o))
	f.src.Set(cluster("a", "https://a"), cluster("b", "fail://b"))
	f.sync(t)
	f.sync(t)
	require.NoError(t, f.syncer.Probe(context.Background()))
	p.set("a", errRefused)
	require.NoError(t, f.syncer.Probe(context.Background()))

	assert.Equal(t, int32(2), o.syncs.Load())
	assert.Equal(t, int32(2), o.builds.Load(), "b waits for its backoff on the second sync")
	assert.Equal(t, int32(2), o.probes.Load(), "only a has a client to probe")
	assert.Equal(t, int32(2), o.changes.Load(), "Unknown to Ready, Ready to Unreachable")
}

// TestProbesOfAPIServersThatFlip probes local TLS API servers through the
// Syncer while they turn slow, down, unauthorized and healthy again.
func TestProbesOfAPIServersThatFlip(t *testing.T) {
	srv := newTestAPIServer(t, "tok")
	clk := clocktesting.NewFakeClock(epoch)
	src := clusterregistry.NewMemorySource(clusterregistry.Cluster{Name: "flip", Config: srv.config("tok")})
	s, err := clusterregistry.NewSyncer[*clusterregistry.Client](src, clusterregistry.ClientBuilder{}, clusterregistry.WithClock(clk),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{Timeout: 5 * time.Second, FailureThreshold: 2}))
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Sync(ctx)
	require.NoError(t, err)
	defer func() {
		c, _ := s.Registry().Get("flip")
		clusterregistry.ClientBuilder{}.Release(c)
	}()
	health := func() clusterregistry.HealthState {
		h, err := s.Registry().Health("flip")
		require.NoError(t, err)
		return h.State
	}
	probe := func() {
		t.Helper()
		require.NoError(t, s.Probe(ctx))
	}
	// slowProbe probes while the server holds every request, and times the
	// probe out on the fake clock.
	slowProbe := func() {
		t.Helper()
		srv.blackhole.Store(true)
		defer srv.blackhole.Store(false)
		done := make(chan error, 1)
		before := srv.requests.Load()
		go func() { done <- s.Probe(ctx) }()
		require.Eventually(t, func() bool { return srv.requests.Load() > before && clk.Waiters() == 1 }, 10*time.Second, time.Millisecond)
		clk.Step(5 * time.Second)
		require.NoError(t, <-done)
	}

	probe()
	assert.Equal(t, clusterregistry.HealthReady, health())
	slowProbe()
	assert.Equal(t, clusterregistry.HealthReady, health(), "one slow answer does not flap the state")
	slowProbe()
	hh, _ := s.Registry().Health("flip")
	assert.Equal(t, clusterregistry.HealthUnreachable, health(), "%+v", hh)
	probe()
	assert.Equal(t, clusterregistry.HealthReady, health())

	srv.mu.Lock()
	srv.tokens = map[string]bool{}
	srv.mu.Unlock()
	probe()
	probe()
	assert.Equal(t, clusterregistry.HealthUnauthorized, health())

	srv.mu.Lock()
	srv.tokens = map[string]bool{"tok": true}
	srv.mu.Unlock()
	srv.readyz.Store(http.StatusInternalServerError)
	probe()
	assert.Equal(t, clusterregistry.HealthNotReady, health(), "already failing: the latest cause shows")
	srv.readyz.Store(0)
	probe()
	assert.Equal(t, clusterregistry.HealthReady, health())

	srv.CloseClientConnections()
	srv.Listener.Close()
	probe()
	probe()
	assert.Equal(t, clusterregistry.HealthUnreachable, health())
}

func TestProbeLeasesTheClientsItProbes(t *testing.T) {
	p := &scriptedProber{answers: map[string]error{}, block: map[string]bool{"a": true}}
	f := newProbedFixture(t, p, clusterregistry.HealthCheck{Timeout: time.Minute})
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	old := f.client(t, "a")

	probed := make(chan error, 1)
	go func() { probed <- f.syncer.Probe(context.Background()) }()
	require.Eventually(t, func() bool { return p.probes.Load() == 1 }, 10*time.Second, time.Millisecond)
	f.src.Set(withToken(cluster("a", "https://a"), "rotated"))
	f.sync(t)
	assert.False(t, old.released.Load(), "not released while it is probed")
	f.clock.Step(time.Minute)
	require.NoError(t, <-probed)
	assert.True(t, old.released.Load())
}

func TestReplacementInheritsHealthUntilProbed(t *testing.T) {
	p := &scriptedProber{answers: map[string]error{"a": unauthorized()}}
	f := newProbedFixture(t, p, clusterregistry.HealthCheck{})
	f.src.Set(cluster("a", "https://a"))
	f.sync(t)
	require.NoError(t, f.syncer.Probe(context.Background()))
	sub := f.reg.Subscribe()
	defer sub.Close()
	replay := drain(t, sub)
	assert.Equal(t, []evKey{{clusterregistry.EventAdded, "a", 1, true}, {clusterregistry.EventUnhealthy, "a", 1, true}}, keys(replay))

	// Credentials rotated: the new client reads as its predecessor did until
	// it is probed, and then subscribers hear that it is healthy.
	f.src.Set(withToken(cluster("a", "https://a"), "rotated"))
	f.sync(t)
	assert.Equal(t, []evKey{{clusterregistry.EventUpdated, "a", 2, false}}, keys(drain(t, sub)))
	h, _ := f.reg.Health("a")
	assert.Equal(t, clusterregistry.HealthUnauthorized, h.State)
	p.set("a", nil)
	require.NoError(t, f.syncer.Probe(context.Background()))
	assert.Equal(t, []evKey{{clusterregistry.EventHealthy, "a", 2, false}}, keys(drain(t, sub)))
	h, _ = f.reg.Health("a")
	assert.Equal(t, clusterregistry.HealthReady, h.State)
}
