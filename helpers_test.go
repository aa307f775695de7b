package clusterregistry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
)

// fakeClient is the client type of most tests: it remembers what it was
// built from and whether it was released.
type fakeClient struct {
	id       int
	name     string
	host     string
	token    string
	released atomic.Bool
}

// fakeBuilder builds fakeClients. A host that starts with "fail" fails; one
// that starts with "blackhole" blocks until its context ends; one that starts
// with "stuck" blocks until unstuck is closed, ignoring its context.
type fakeBuilder struct {
	unstuck chan struct{}
	prober  clusterregistry.Prober[*fakeClient] // Probe's answers; ready when nil

	mu       sync.Mutex // protects the fields below
	builds   int
	built    []*fakeClient
	released []*fakeClient

	inflight    atomic.Int32
	maxInflight atomic.Int32
}

func newFakeBuilder() *fakeBuilder { return &fakeBuilder{unstuck: make(chan struct{})} }

func (b *fakeBuilder) Build(ctx context.Context, c clusterregistry.Cluster) (*fakeClient, error) {
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for {
		m := b.maxInflight.Load()
		if n <= m || b.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	b.mu.Lock()
	b.builds++
	id := b.builds
	b.mu.Unlock()

	host := c.Config.Host
	switch {
	case strings.HasPrefix(host, "fail"):
		return nil, fmt.Errorf("server version: dial %s: connection refused", host)
	case strings.HasPrefix(host, "blackhole"):
		<-ctx.Done()
		return nil, fmt.Errorf("server version: %w", ctx.Err())
	case strings.HasPrefix(host, "stuck"):
		<-b.unstuck
	}
	fc := &fakeClient{id: id, name: c.Name, host: host, token: c.Config.BearerToken}
	b.mu.Lock()
	b.built = append(b.built, fc)
	b.mu.Unlock()
	return fc, nil
}

func (b *fakeBuilder) Release(c *fakeClient) {
	if c.released.Swap(true) {
		panic("client released twice: " + c.name)
	}
	b.mu.Lock()
	b.released = append(b.released, c)
	b.mu.Unlock()
}

func (b *fakeBuilder) Probe(ctx context.Context, c *fakeClient) error {
	if b.prober == nil {
		return nil
	}
	return b.prober.Probe(ctx, c)
}

func (b *fakeBuilder) buildCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.builds
}

func (b *fakeBuilder) releasedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.released)
}

// cluster returns a description of a cluster at host with a bearer token.
func cluster(name, host string) clusterregistry.Cluster {
	return clusterregistry.Cluster{
		Name:   name,
		Config: &rest.Config{Host: host, BearerToken: "token-" + name},
	}
}

func withToken(c clusterregistry.Cluster, token string) clusterregistry.Cluster {
	c.Config = rest.CopyConfig(c.Config)
	c.Config.BearerToken = token
	return c
}

func asDefault(c clusterregistry.Cluster) clusterregistry.Cluster {
	c.Default = true
	return c
}

var epoch = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

type fixture struct {
	src     *clusterregistry.MemorySource
	builder *fakeBuilder
	clock   *clocktesting.FakeClock
	syncer  *clusterregistry.Syncer[*fakeClient]
	reg     *clusterregistry.Registry[*fakeClient]
}

func newFixture(t *testing.T, opts ...clusterregistry.Option) *fixture {
	t.Helper()
	f := &fixture{
		src:     clusterregistry.NewMemorySource(),
		builder: newFakeBuilder(),
		clock:   clocktesting.NewFakeClock(epoch),
	}
	opts = append([]clusterregistry.Option{clusterregistry.WithClock(f.clock)}, opts...)
	s, err := clusterregistry.NewSyncer[*fakeClient](f.src, f.builder, opts...)
	require.NoError(t, err)
	f.syncer, f.reg = s, s.Registry()
	return f
}

// newProbedFixture is newFixture with a health check whose probes p answers.
func newProbedFixture(t *testing.T, p clusterregistry.Prober[*fakeClient], hc clusterregistry.HealthCheck, opts ...clusterregistry.Option) *fixture {
	t.Helper()
	f := newFixture(t, append(opts, clusterregistry.WithHealthCheck(hc))...)
	f.builder.prober = p
	return f
}

func (f *fixture) sync(t *testing.T) clusterregistry.SyncReport {
	t.Helper()
	rep, err := f.syncer.Sync(context.Background())
	require.NoError(t, err)
	return rep
}

// run starts Run and stops it at the end of the test, checking it returned.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.syncer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.NoError(t, f.syncer.WaitForFirstSync(ctx))
}

// waitForTimer blocks until the Syncer waits on the fake clock: a timer it
// started is the only way to know that it reached that point.
func (f *fixture) waitForTimer(t *testing.T) {
	t.Helper()
	require.Eventually(t, f.clock.HasWaiters, 10*time.Second, time.Millisecond)
}

func (f *fixture) client(t *testing.T, name string) *fakeClient {
	t.Helper()
	c, err := f.reg.Get(name)
	require.NoError(t, err)
	return c
}

var errBoom = errors.New("boom")
