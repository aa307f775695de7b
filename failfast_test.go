package clusterregistry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

// failFastFixture is one cluster of a test server, built by a Syncer that
// only Sync and Probe drive, on a fake clock.
type failFastFixture struct {
	srv    *clusterregistrytest.Server
	clk    *clocktesting.FakeClock
	syncer *clusterregistry.Syncer[*clusterregistry.Client]
	client *clusterregistry.Client
}

func newFailFastFixture(t *testing.T, b clusterregistry.Builder[*clusterregistry.Client], opts ...clusterregistry.Option) *failFastFixture {
	f := &failFastFixture{srv: clusterregistrytest.NewServer(t), clk: clocktesting.NewFakeClock(time.Now())}
	source := clusterregistrytest.NewSource(f.srv.Cluster("prod"))
	var err error
	f.syncer, err = clusterregistry.NewSyncer(source, b, append(opts, clusterregistry.WithClock(f.clk))...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, f.syncer.Close()) })
	clusterregistrytest.Sync(t, f.syncer)
	f.client, err = f.syncer.Registry().Get("prod")
	require.NoError(t, err)
	return f
}

func (f *failFastFixture) list() error {
	_, err := f.client.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	return err
}

// probe runs one probe round. With a timeout, it steps the fake clock past
// it once the probe waits for it: the server is silent.
func (f *failFastFixture) probe(t *testing.T, timeout time.Duration) {
	done := make(chan error, 1)
	// Joined below.
	go func() { done <- f.syncer.Probe(context.Background()) }()
	for timeout > 0 {
		select {
		case err := <-done:
			require.NoError(t, err)
			return
		case <-time.After(time.Millisecond):
			if f.clk.HasWaiters() {
				f.clk.Step(timeout)
				timeout = 0
			}
		}
	}
	require.NoError(t, <-done)
}

func TestFailFastWhileTheHealthCheckSaysUnreachable(t *testing.T) {
	const probeTimeout = time.Second
	hc := clusterregistry.HealthCheck{Timeout: probeTimeout, FailureThreshold: 1}
	// An hour: were a request sent to the black hole, the test would hang.
	f := newFailFastFixture(t, clusterregistry.ClientBuilder{RequestTimeout: time.Hour}, clusterregistry.WithHealthCheck(hc))
	f.probe(t, 0)
	require.NoError(t, f.list())

	f.srv.BlackHole()
	f.probe(t, probeTimeout)
	health, err := f.syncer.Registry().Health("prod")
	require.NoError(t, err)
	require.Equal(t, clusterregistry.HealthUnreachable, health.State)

	sent := f.srv.Requests()
	err = f.list()
	var ue *clusterregistry.UnreachableError
	require.ErrorAs(t, err, &ue)
	assert.ErrorIs(t, err, clusterregistry.ErrUnreachable)
	assert.Equal(t, "prod", ue.Name)
	assert.Equal(t, health.Since, ue.Since)
	assert.ErrorContains(t, err, `cluster "prod": unreachable since`)
	assert.Equal(t, sent, f.srv.Requests(), "a request reached the server")
	f.clk.Step(time.Minute)
	require.ErrorAs(t, f.list(), &ue, "the probes find out when it answers; no caller's request waits for it")
	assert.Equal(t, sent, f.srv.Requests())

	// Probing goes on, and the first probe that gets an answer closes the
	// breaker: a breaker that never closes again fails here.
	f.srv.Heal()
	f.probe(t, 0)
	assert.NoError(t, f.list())
}

func TestFailFastAfterRequestsTimeOut(t *testing.T) {
	f := newFailFastFixture(t, clusterregistry.ClientBuilder{RequestTimeout: 20 * time.Millisecond})
	f.srv.BlackHole()
	for range 3 {
		require.ErrorIs(t, f.list(), context.DeadlineExceeded)
	}
	sent := f.srv.Requests()
	err := f.list()
	var ue *clusterregistry.UnreachableError
	require.ErrorAs(t, err, &ue, "3 timeouts in a row")
	assert.ErrorIs(t, ue.Err, context.DeadlineExceeded)
	assert.Equal(t, f.clk.Now(), ue.Since)
	assert.Equal(t, sent, f.srv.Requests())

	// Half-open: after the trial interval one request goes through; while
	// the cluster is still silent it fails, and the rest fail fast.
	f.clk.Step(5 * time.Second)
	require.ErrorIs(t, f.list(), context.DeadlineExceeded, "the trial request")
	require.ErrorAs(t, f.list(), &ue)

	// The next trial finds the cluster answering: requests go through again.
	f.srv.Heal()
	require.ErrorAs(t, f.list(), &ue, "no trial before its time")
	f.clk.Step(5 * time.Second)
	require.NoError(t, f.list(), "the trial request")
	require.NoError(t, f.list())
}

func TestCancelledRequestsDoNotCountAsTimeouts(t *testing.T) {
	f := newFailFastFixture(t, clusterregistry.ClientBuilder{})
	f.srv.BlackHole()
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		// Whether the request is in flight or not yet sent when this
		// fires, it ends cancelled, which is no timeout.
		timer := time.AfterFunc(10*time.Millisecond, cancel)
		defer timer.Stop()
		_, err := f.client.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		require.ErrorIs(t, err, context.Canceled)
		cancel()
	}
	f.srv.Heal()
	assert.NoError(t, f.list())
}

func TestWithoutFailFastSendsEveryRequest(t *testing.T) {
	f := newFailFastFixture(t, clusterregistry.ClientBuilder{RequestTimeout: 20 * time.Millisecond}, clusterregistry.WithoutFailFast())
	f.srv.BlackHole()
	for range 4 {
		err := f.list()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.False(t, errors.Is(err, clusterregistry.ErrUnreachable))
	}
}

func TestClientsOutsideASyncerNeverFailFast(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{RequestTimeout: 20 * time.Millisecond}
	c, err := b.Build(context.Background(), srv.Cluster("prod"))
	require.NoError(t, err)
	defer b.Release(c)
	srv.BlackHole()
	for range 4 {
		_, err := c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
}

// A Prober of the caller's own knows nothing of fail-fast: its probes of a
// failing-fast client fail fast too, and the trial requests must close the
// breaker instead, or it would never close.
func TestFailFastClosesUnderAProberOfTheCallersOwn(t *testing.T) {
	const probeTimeout = time.Second
	cb := clusterregistry.ClientBuilder{RequestTimeout: time.Hour}
	b := clusterregistry.BuilderFuncs[*clusterregistry.Client]{
		BuildFunc:   cb.Build,
		ReleaseFunc: cb.Release,
		ProbeFunc: func(ctx context.Context, c *clusterregistry.Client) error {
			_, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		},
	}
	hc := clusterregistry.HealthCheck{Timeout: probeTimeout, FailureThreshold: 1}
	f := newFailFastFixture(t, b, clusterregistry.WithHealthCheck(hc))
	f.srv.BlackHole()
	f.probe(t, probeTimeout)
	var ue *clusterregistry.UnreachableError
	require.ErrorAs(t, f.list(), &ue)

	f.srv.Heal()
	f.probe(t, 0) // fails fast: it tells the client nothing
	require.ErrorAs(t, f.list(), &ue)
	f.clk.Step(5 * time.Second)
	require.NoError(t, f.list(), "the trial request")
	require.NoError(t, f.list())
}
