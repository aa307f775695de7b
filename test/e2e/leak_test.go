package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// rotations is how many times the leak test replaces the credentials.
const rotations = 1000

// resources is what the leak test counts.
type resources struct{ goroutines, fds, tcp int }

func measure(t *testing.T) resources {
	return resources{goroutines: runtime.NumGoroutine(), fds: countFDs(t), tcp: countTCP(t)}
}

// noProxy sends every request directly. A config that has a Proxy function
// (as one from a kubeconfig with proxy-url has) gets an http.Transport of its
// own from client-go instead of a shared, cached one.
func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// A thousand credential rotations of one cluster against a real API server,
// each followed by requests through the new client, some of them leased:
// afterwards goroutines, file descriptors and TCP connections are back where
// they started, with no tolerance, and after the Syncer stops no goroutine of
// its remains. It runs twice: with client-go's shared transport (every client
// of the cluster shares one connection pool), and with a transport per
// client, where a client that is not released keeps its connection.
func TestRotationsLeakNothing(t *testing.T) {
	env := localcluster.StartT(t, 1)
	c := env.Cluster("cluster-1")

	// Issued up front, so that the admin requests that issue them are done
	// before the counting starts. Both runs use them.
	tokens := make([]string, rotations+1)
	tokens[0] = c.Token()
	for i := 1; i <= rotations; i++ {
		tok, err := c.IssueToken(t.Context())
		require.NoError(t, err)
		tokens[i] = tok
	}

	tests := []struct {
		name  string
		proxy func(*http.Request) (*url.URL, error)
	}{
		{name: "shared transport"},
		{name: "transport per client", proxy: noProxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			describe := func(i int) clusterregistry.Cluster {
				d := describe(c, tokens[i], true)
				d.Config.Proxy = tt.proxy
				return d
			}
			rotationsLeakNothing(t, tokens, describe)
		})
	}
}

func rotationsLeakNothing(t *testing.T, tokens []string, describe func(i int) clusterregistry.Cluster) {
	ignore := goleak.IgnoreCurrent() // the harness's own goroutines
	source := clusterregistry.NewMemorySource(describe(0))
	builder := &recordingBuilder{ClientBuilder: fast}
	s, err := clusterregistry.NewSyncer(source, builder)
	require.NoError(t, err)
	reg := s.Registry()

	rotate := func(i int) {
		source.Upsert(describe(i))
		rep, err := s.Sync(syncCtx(t))
		require.NoError(t, err)
		require.Equal(t, []string{"cluster-1"}, rep.Updated, "rotation %d", i)
		client, err := reg.Get("cluster-1")
		require.NoError(t, err)
		require.Equal(t, tokens[i], client.Config().BearerToken)
		_, err = client.Kubernetes().CoreV1().Namespaces().Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
		require.NoError(t, err, "rotation %d", i)
		if i%10 == 0 {
			lease, err := reg.Lease("cluster-1")
			require.NoError(t, err)
			_, err = lease.Client().Dynamic().Resource(namespaces).Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
			require.NoError(t, err, "rotation %d", i)
			lease.Release()
		}
	}
	// settle drops the idle connections of the current client, so that the
	// counts compare pools in the same state.
	settle := func() {
		client, err := reg.Get("cluster-1")
		require.NoError(t, err)
		utilnet.CloseIdleConnectionsFor(client.HTTPClient().Transport)
	}

	rep, err := s.Sync(syncCtx(t))
	require.NoError(t, err)
	require.Equal(t, []string{"cluster-1"}, rep.Added)
	// A few rounds first, so that everything made once per process (the
	// transport cache entry, the clientset's lazy parts) exists.
	const warmup = 5
	for i := 1; i <= warmup; i++ {
		rotate(i)
	}
	settle()
	before := waitStable(t)
	t.Logf("before: %+v", before)

	start := time.Now()
	var peak resources
	for i := warmup + 1; i <= rotations; i++ {
		rotate(i)
		if i%100 == 0 {
			now := measure(t)
			peak = resources{max(peak.goroutines, now.goroutines), max(peak.fds, now.fds), max(peak.tcp, now.tcp)}
		}
	}
	t.Logf("%d rotations in %s; peak while running: %+v", rotations-warmup, time.Since(start).Round(time.Millisecond), peak)

	settle()
	var after resources
	waitFor(t, "resources back at their starting level", func() bool {
		after = measure(t)
		return after.goroutines <= before.goroutines && after.fds <= before.fds && after.tcp <= before.tcp
	}, func() string { return fmt.Sprintf("before %+v, now %+v", before, after) })
	t.Logf("after: %+v", after)

	// Every client but the current one was released, each exactly once.
	builder.mu.Lock()
	released := len(builder.released)
	seen := map[*clusterregistry.Client]bool{}
	for _, r := range builder.released {
		assert.False(t, seen[r], "a client released twice")
		seen[r] = true
	}
	builder.mu.Unlock()
	assert.Equal(t, rotations, released)

	shutdown(t, s)
	assert.Equal(t, rotations+1, len(builder.released), "Run released the last client on its way out")
	goleak.VerifyNone(t, append(leakOptions(), ignore)...)
}

// waitStable measures until two measurements 100ms apart agree, so that a
// connection still closing is not counted as the baseline.
func waitStable(t *testing.T) resources {
	t.Helper()
	prev := measure(t)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		now := measure(t)
		if now == prev {
			return now
		}
		prev = now
	}
	return prev
}
