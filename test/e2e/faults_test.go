package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// One of five clusters is black-holed while all five get new tokens: the
// sync ends within the build timeout plus a margin, the four others get
// their new clients, and the silent one keeps its last good client with the
// timeout recorded beside it, until the path heals.
func TestBlackHoledClusterDelaysNobody(t *testing.T) {
	const buildTimeout = 2 * time.Second
	env := localcluster.StartT(t, 5)
	clusters := env.Clusters()

	source := clusterregistry.NewMemorySource()
	for i, c := range clusters {
		source.Upsert(describe(c, c.Token(), i == 0))
	}
	s, err := clusterregistry.NewSyncer(source, fast,
		clusterregistry.WithBuildTimeout(buildTimeout),
		clusterregistry.WithBackoff(50*time.Millisecond, 200*time.Millisecond),
		clusterregistry.WithLogger(testr.New(t)))
	require.NoError(t, err)
	defer shutdown(t, s)
	rep, err := s.Sync(syncCtx(t))
	require.NoError(t, err)
	require.Len(t, rep.Added, 5)
	reg := s.Registry()
	lastGood, err := reg.Get("cluster-3")
	require.NoError(t, err)

	newTokens := map[string]string{}
	for i, c := range clusters {
		tok, err := c.IssueToken(t.Context())
		require.NoError(t, err)
		newTokens[c.Name()] = tok
		source.Upsert(describe(c, tok, i == 0))
	}
	env.Cluster("cluster-3").BlackHole()

	start := time.Now()
	rep, err = s.Sync(syncCtx(t))
	took := time.Since(start)
	require.NoError(t, err)
	assert.Less(t, took, buildTimeout+3*time.Second, "the sync waits for no more than the build timeout")
	assert.GreaterOrEqual(t, took, buildTimeout, "the black-holed build ran into its timeout")
	assert.Equal(t, []string{"cluster-1", "cluster-2", "cluster-4", "cluster-5"}, rep.Updated)
	assert.Equal(t, []string{"cluster-3"}, rep.Failed)

	for _, c := range clusters {
		if c.Name() == "cluster-3" {
			continue
		}
		client, err := reg.Get(c.Name())
		require.NoError(t, err)
		assert.Equal(t, newTokens[c.Name()], client.Config().BearerToken, c.Name())
		_, err = client.Kubernetes().CoreV1().Namespaces().Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
		assert.NoError(t, err, c.Name())
	}

	served, err := reg.Get("cluster-3")
	require.NoError(t, err, "a failed rebuild keeps the last good client")
	assert.Same(t, lastGood, served)
	var cerr *clusterregistry.ClusterError
	require.True(t, errors.As(reg.Snapshot().Err("cluster-3"), &cerr), "error of cluster-3: %v", reg.Snapshot().Err("cluster-3"))
	assert.Equal(t, "cluster-3", cerr.Name)
	assert.Equal(t, 1, cerr.Attempts)
	assert.Contains(t, cerr.Error(), "timed out")
	assert.NotContains(t, cerr.Error(), newTokens["cluster-3"], "no credential in an error")
	info, ok := reg.Snapshot().Cluster("cluster-3")
	require.True(t, ok)
	assert.True(t, info.Serving)
	assert.Error(t, info.Err)

	// Healed, the cluster gets its new client once its backoff has passed.
	require.NoError(t, env.Cluster("cluster-3").Heal())
	waitFor(t, "cluster-3 to recover", func() bool {
		_, err := s.Sync(syncCtx(t))
		return err == nil && reg.Snapshot().Err("cluster-3") == nil
	})
	recovered, err := reg.Get("cluster-3")
	require.NoError(t, err)
	assert.Equal(t, newTokens["cluster-3"], recovered.Config().BearerToken)
	_, err = recovered.Kubernetes().CoreV1().Namespaces().Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
	assert.NoError(t, err)
}

// An API server is killed while its cluster's description changes: the
// rebuild fails and the error appears, retries follow the backoff on the
// Syncer's (fake) clock and no sooner, and once the server is back and the
// backoff has passed the error clears. The old client serves throughout.
func TestKilledAPIServerRecoversWithBackoff(t *testing.T) {
	const base = 10 * time.Second
	env := localcluster.StartT(t, 2)
	c2 := env.Cluster("cluster-2")
	clk := clocktesting.NewFakeClock(time.Now())

	source := clusterregistry.NewMemorySource(describe(env.Cluster("cluster-1"), env.Cluster("cluster-1").Token(), true), describe(c2, c2.Token(), false))
	s, err := clusterregistry.NewSyncer(source, fast,
		clusterregistry.WithClock(clk),
		clusterregistry.WithBackoff(base, 8*base),
		clusterregistry.WithLogger(testr.New(t)))
	require.NoError(t, err)
	defer shutdown(t, s)
	rep, err := s.Sync(syncCtx(t))
	require.NoError(t, err)
	require.Len(t, rep.Added, 2)
	reg := s.Registry()
	lastGood, err := reg.Get("cluster-2")
	require.NoError(t, err)

	// Data written before the crash must be there after the restart.
	_, err = adminClient(t, c2).CoreV1().ConfigMaps(localcluster.Namespace).Create(t.Context(),
		configMap("before-restart"), metav1.CreateOptions{})
	require.NoError(t, err)
	newToken, err := c2.IssueToken(t.Context()) // needs the server up
	require.NoError(t, err)

	require.NoError(t, c2.Stop())
	source.Upsert(describe(c2, newToken, false))

	clusterErr := func() *clusterregistry.ClusterError {
		t.Helper()
		var cerr *clusterregistry.ClusterError
		require.True(t, errors.As(reg.Snapshot().Err("cluster-2"), &cerr), "error of cluster-2: %v", reg.Snapshot().Err("cluster-2"))
		return cerr
	}

	// The error appears, with the first backoff: base, plus up to 20% jitter.
	rep, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Equal(t, []string{"cluster-2"}, rep.Failed)
	assert.Equal(t, 1, rep.Builds)
	cerr := clusterErr()
	assert.Equal(t, 1, cerr.Attempts)
	assert.Equal(t, clk.Now(), cerr.Since)
	assert.GreaterOrEqual(t, cerr.NextRetry.Sub(clk.Now()), base)
	assert.LessOrEqual(t, cerr.NextRetry.Sub(clk.Now()), base*12/10)
	served, err := reg.Get("cluster-2")
	require.NoError(t, err)
	assert.Same(t, lastGood, served, "the last good client keeps serving")

	// Before the backoff ends, a sync does not try again.
	clk.Step(base / 2)
	rep, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Zero(t, rep.Builds)
	assert.Equal(t, 1, clusterErr().Attempts)

	// After it, the sync tries again, fails again, and the backoff doubles.
	clk.SetTime(clusterErr().NextRetry)
	rep, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Builds)
	cerr = clusterErr()
	assert.Equal(t, 2, cerr.Attempts)
	assert.GreaterOrEqual(t, cerr.NextRetry.Sub(clk.Now()), 2*base)
	assert.LessOrEqual(t, cerr.NextRetry.Sub(clk.Now()), 2*base*12/10)

	// The server comes back; the error stays until the backoff has passed.
	require.NoError(t, c2.Start(t.Context()))
	rep, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Zero(t, rep.Builds, "no retry before the backoff ends")
	assert.Equal(t, 2, clusterErr().Attempts)

	clk.SetTime(cerr.NextRetry)
	rep, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Equal(t, []string{"cluster-2"}, rep.Updated)
	assert.Empty(t, rep.Failed)
	assert.NoError(t, reg.Snapshot().Err("cluster-2"))
	client, err := reg.Get("cluster-2")
	require.NoError(t, err)
	assert.Equal(t, newToken, client.Config().BearerToken)
	assert.Equal(t, "v1.37.2", client.ServerVersion().GitVersion)
	_, err = client.Kubernetes().CoreV1().ConfigMaps(localcluster.Namespace).Get(t.Context(), "before-restart", metav1.GetOptions{})
	assert.NoError(t, err, "the restarted server serves the data written before the crash")
}

// A killed API server with health probes on and nothing changed in the
// source: the probes mark it Unreachable once the failure threshold is
// reached, while its client keeps serving and the other cluster stays Ready;
// after the restart one probe makes it Ready again. A revoked token shows as
// Unauthorized, and new credentials in the source bring a working client.
func TestKilledAPIServerHealth(t *testing.T) {
	env := localcluster.StartT(t, 2)
	c1, c2 := env.Cluster("cluster-1"), env.Cluster("cluster-2")
	clk := clocktesting.NewFakeClock(time.Now())

	source := clusterregistry.NewMemorySource(describe(c1, c1.Token(), true), describe(c2, c2.Token(), false))
	s, err := clusterregistry.NewSyncer(source, fast,
		clusterregistry.WithClock(clk),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{FailureThreshold: 2}),
		clusterregistry.WithLogger(testr.New(t)))
	require.NoError(t, err)
	defer shutdown(t, s)
	_, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	reg := s.Registry()
	served, err := reg.Get("cluster-2")
	require.NoError(t, err)
	sub := reg.Subscribe()
	defer sub.Close()

	health := func(name string) clusterregistry.Health {
		t.Helper()
		h, err := reg.Health(name)
		require.NoError(t, err)
		return h
	}
	probe := func() {
		t.Helper()
		require.NoError(t, s.Probe(syncCtx(t)))
	}

	probe()
	assert.Equal(t, clusterregistry.HealthReady, health("cluster-1").State)
	assert.Equal(t, clusterregistry.HealthReady, health("cluster-2").State)

	require.NoError(t, c2.Stop())
	probe()
	h := health("cluster-2")
	assert.Equal(t, clusterregistry.HealthReady, h.State, "one failure is below the threshold")
	assert.Equal(t, 1, h.Failures)
	require.Error(t, h.Err)
	probe()
	h = health("cluster-2")
	assert.Equal(t, clusterregistry.HealthUnreachable, h.State)
	assert.ErrorContains(t, h.Err, "connection refused")
	assert.Equal(t, clusterregistry.HealthReady, health("cluster-1").State)
	ev := nextChange(t, sub)
	assert.Equal(t, clusterregistry.EventUnhealthy, ev.Type)
	assert.Equal(t, "cluster-2", ev.Name)
	assert.NoError(t, reg.Snapshot().Err("cluster-2"), "probing is not a build: no cluster error")
	stillServed, err := reg.Get("cluster-2")
	require.NoError(t, err)
	assert.Same(t, served, stillServed, "probing never rebuilds")

	require.NoError(t, c2.Start(t.Context()))
	probe()
	assert.Equal(t, clusterregistry.HealthReady, health("cluster-2").State)
	assert.NoError(t, health("cluster-2").Err)
	ev = nextChange(t, sub)
	assert.Equal(t, clusterregistry.EventHealthy, ev.Type)
	assert.Equal(t, "cluster-2", ev.Name)

	// Revoke the token the client uses: Unauthorized after the threshold.
	newToken, err := c2.IssueToken(t.Context())
	require.NoError(t, err)
	require.NoError(t, c2.RevokeToken(t.Context(), c2.Token()))
	probe()
	probe()
	assert.Equal(t, clusterregistry.HealthUnauthorized, health("cluster-2").State)
	ev = nextChange(t, sub)
	assert.Equal(t, clusterregistry.EventUnhealthy, ev.Type)
	assert.Equal(t, clusterregistry.HealthUnauthorized, ev.Health.State)
	assert.NotContains(t, ev.Err.Error(), c2.Token(), "no credential in an event")

	source.Upsert(describe(c2, newToken, false))
	rep, err := s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Equal(t, []string{"cluster-2"}, rep.Updated)
	probe()
	assert.Equal(t, clusterregistry.HealthReady, health("cluster-2").State)
	client, err := reg.Get("cluster-2")
	require.NoError(t, err)
	_, err = client.Kubernetes().CoreV1().Namespaces().Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
	assert.NoError(t, err)
}

// nextChange returns the next event of sub that is not a replay of the
// state at subscription time.
func nextChange(t *testing.T, sub *clusterregistry.Subscription) clusterregistry.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		require.NoError(t, err)
		if !ev.Replay {
			return ev
		}
	}
}
