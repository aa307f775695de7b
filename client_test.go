package clusterregistry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestClientBuilderBuildsTheBundle(t *testing.T) {
	srv := newTestAPIServer(t, "good-token")
	ctx := context.Background()
	c, err := clusterregistry.ClientBuilder{UserAgent: "registry-test", QPS: 50, Burst: 100}.
		Build(ctx, clusterregistry.Cluster{Name: "one", Config: srv.config("good-token")})
	require.NoError(t, err)
	defer clusterregistry.ClientBuilder{}.Release(c)

	assert.Equal(t, "one", c.Name())
	assert.Equal(t, "v1.37.2-test", c.ServerVersion().GitVersion)
	assert.Equal(t, "registry-test", c.Config().UserAgent)
	assert.Equal(t, float32(50), c.Config().QPS)

	nss, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, nss.Items, 1)
	assert.Equal(t, "default", nss.Items[0].Name)

	list, err := c.Dynamic().Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)

	v, err := c.Discovery().ServerVersion()
	require.NoError(t, err)
	assert.Equal(t, "v1.37.2-test", v.GitVersion)
	assert.Same(t, c.Kubernetes(), c.Kubernetes(), "made once")

	// Config hands out copies.
	c.Config().Host = "https://elsewhere"
	assert.Equal(t, srv.URL, c.Config().Host)
}

func TestClientBuilderRefusesBadConfigs(t *testing.T) {
	srv := newTestAPIServer(t, "good-token")
	tests := []struct {
		name string
		give *rest.Config
		want string
	}{
		{"unauthorized", srv.config("wrong-token"), "server version: the server has asked for the client to provide credentials"},
		{"qps without burst", func() *rest.Config { c := srv.config("good-token"); c.QPS = 5; return c }(),
			"field config.burst: must be positive when qps is set"},
		{"bad CA", func() *rest.Config { c := srv.config("good-token"); c.CAData = []byte("not a certificate"); return c }(),
			"transport: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clusterregistry.ClientBuilder{}.Build(context.Background(), clusterregistry.Cluster{Name: "x", Config: tt.give})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestBlackHoledAPIServerDelaysNobody uses real TLS servers and the real
// ClientBuilder: one server accepts connections and never answers.
func TestBlackHoledAPIServerDelaysNobody(t *testing.T) {
	servers := map[string]*testAPIServer{}
	src := clusterregistry.NewMemorySource()
	for _, name := range []string{"a", "b", "c", "hole"} {
		servers[name] = newTestAPIServer(t, "t1", "t2")
		src.Upsert(clusterregistry.Cluster{Name: name, Config: servers[name].config("t1")})
	}
	clk := clocktesting.NewFakeClock(epoch)
	s, err := clusterregistry.NewSyncer[*clusterregistry.Client](src, clusterregistry.ClientBuilder{},
		clusterregistry.WithClock(clk), clusterregistry.WithBuildTimeout(10*time.Second))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.NoError(t, s.WaitForFirstSync(ctx))
	hole, err := s.Registry().Get("hole")
	require.NoError(t, err)

	servers["hole"].blackhole.Store(true)
	before := map[string]int64{}
	var rotated []clusterregistry.Cluster
	for name, srv := range servers {
		before[name] = srv.requests.Load()
		rotated = append(rotated, clusterregistry.Cluster{Name: name, Config: srv.config("t2")})
	}
	src.Set(rotated...)
	// The healthy clusters' builds finish at once; the black-holed one waits
	// for its deadline, and the sync publishes when every build has ended.
	// Meanwhile readers are served by the current clients.
	require.Eventually(t, func() bool {
		return servers["a"].requests.Load() > before["a"] && servers["b"].requests.Load() > before["b"] &&
			servers["c"].requests.Load() > before["c"] && servers["hole"].requests.Load() > before["hole"] &&
			clk.Waiters() == 2 // the black-holed build's deadline and the sync's publish tick
	}, 10*time.Second, time.Millisecond)
	for _, name := range []string{"a", "b", "c", "hole"} {
		_, err := s.Registry().Get(name)
		assert.NoError(t, err)
	}

	// A second on, the healthy clusters' new clients are published while the
	// black-holed one still builds.
	clk.Step(time.Second)
	require.Eventually(t, func() bool {
		for _, name := range []string{"a", "b", "c"} {
			if c, err := s.Registry().Get(name); err != nil || c.Config().BearerToken != "t2" {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond)
	assert.NoError(t, s.Registry().Snapshot().Err("hole"), "still building")

	clk.Step(9 * time.Second)
	require.Eventually(t, func() bool { return s.Registry().Snapshot().Err("hole") != nil }, 10*time.Second, time.Millisecond)
	assert.ErrorContains(t, s.Registry().Snapshot().Err("hole"), "build timed out after 10s")
	for _, name := range []string{"a", "b", "c"} {
		c, err := s.Registry().Get(name)
		require.NoError(t, err)
		assert.Equal(t, "t2", c.Config().BearerToken)
	}
	still, err := s.Registry().Get("hole")
	require.NoError(t, err)
	assert.Same(t, hole, still, "the black-holed cluster keeps its last good client")
}

// TestNoCredentialReachesErrorsOrLogs runs syncs whose clusters carry bearer
// tokens, basic-auth passwords and client keys, and fail in every way a build
// can, and looks for the secrets in every error and log line.
func TestNoCredentialReachesErrorsOrLogs(t *testing.T) {
	srv := newTestAPIServer(t, "accepted-token")
	key, keyPEM := newClientKey(t)
	certPEM := selfSignedCert(t, key)
	secrets := []string{"bearer-SECRET-1", "basic-SECRET-2", "accepted-token", string(keyPEM),
		strings.Split(string(keyPEM), "\n")[1]}

	unauthorized := srv.config("bearer-SECRET-1")
	basic := srv.config("")
	basic.Username, basic.Password = "admin", "basic-SECRET-2"
	withKey := srv.config("accepted-token")
	withKey.CertData, withKey.KeyData = certPEM, keyPEM
	withKey.CAData = []byte("garbage CA")
	unreachable := srv.config("accepted-token")
	unreachable.Host = "https://127.0.0.1:1"
	badHost := srv.config("bearer-SECRET-1")
	badHost.Host = "https://user:basic-SECRET-2@127.0.0.1:1"

	var mu sync.Mutex
	var logs []string
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		logs = append(logs, prefix+" "+args)
		mu.Unlock()
	}, funcr.Options{Verbosity: 10})

	src := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "unauthorized", Config: unauthorized},
		clusterregistry.Cluster{Name: "basic", Config: basic},
		clusterregistry.Cluster{Name: "with-key", Config: withKey},
		clusterregistry.Cluster{Name: "unreachable", Config: unreachable},
		clusterregistry.Cluster{Name: "userinfo", Config: badHost},
	)
	s, err := clusterregistry.NewSyncer[*clusterregistry.Client](src, clusterregistry.ClientBuilder{},
		clusterregistry.WithLogger(logger), clusterregistry.WithBuildTimeout(5*time.Second),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{FailureThreshold: 1}))
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	sub := s.Registry().Subscribe()
	defer sub.Close()
	rep, err := s.Sync(context.Background())
	require.NoError(t, err)
	require.Len(t, rep.Failed, 5)

	// A cluster that worked, then has its token refused: probes log and
	// send events about it.
	src.Upsert(clusterregistry.Cluster{Name: "rotated", Config: srv.config("accepted-token")})
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	srv.mu.Lock()
	srv.tokens = map[string]bool{}
	srv.mu.Unlock()
	require.NoError(t, s.Probe(context.Background()))
	h, err := s.Registry().Health("rotated")
	require.NoError(t, err)
	require.Equal(t, clusterregistry.HealthUnauthorized, h.State)

	var texts []string
	events := drain(t, sub)
	require.NotEmpty(t, events)
	for _, ev := range events {
		texts = append(texts, fmt.Sprintf("%+v %v", ev, ev.Err))
	}
	texts = append(texts, h.Err.Error())
	for ci := range s.Registry().Snapshot().Clusters() {
		if err := ci.Err; err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err))
		}
	}
	for _, name := range s.Registry().Snapshot().Names() {
		if _, err := s.Registry().Get(name); err != nil {
			texts = append(texts, err.Error())
		}
	}
	mu.Lock()
	texts = append(texts, logs...)
	mu.Unlock()
	require.NotEmpty(t, logs)
	for _, text := range texts {
		for _, secret := range secrets {
			assert.NotContains(t, text, secret)
		}
	}
}

// TestNoLeaksOverManyCycles adds, rotates and removes clusters a thousand
// times against local TLS API servers, then checks that goroutines, open file
// descriptors and server-side connections are back where they started.
func TestNoLeaksOverManyCycles(t *testing.T) {
	const cycles = 1000
	servers := []*testAPIServer{newTestAPIServer(t, "t0", "t1"), newTestAPIServer(t, "t0", "t1")}
	src := clusterregistry.NewMemorySource(clusterregistry.Cluster{Name: "steady", Config: servers[0].config("t0")})
	// Not a Watcher: the test's own syncs are the only ones besides Run's first.
	s, err := clusterregistry.NewSyncer[*clusterregistry.Client](clusterregistry.SourceFunc(src.List), clusterregistry.ClientBuilder{},
		clusterregistry.WithLogger(logr.Discard()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	baseGoroutines := runtime.NumGoroutine()
	baseFDs := openFDs(t)
	go func() { done <- s.Run(ctx) }()
	require.NoError(t, s.WaitForFirstSync(ctx))

	for i := range cycles {
		srv := servers[i%2]
		tok := fmt.Sprintf("t%d", i%2)
		src.Upsert(clusterregistry.Cluster{Name: "cycling", Config: srv.config(tok)})
		mustSync(t, s, "added", "cycling")
		src.Upsert(clusterregistry.Cluster{Name: "cycling", Config: srv.config("t" + fmt.Sprint((i+1)%2))})
		mustSync(t, s, "updated", "cycling")
		lease, err := s.Registry().Lease("steady")
		require.NoError(t, err)
		src.Delete("cycling")
		mustSync(t, s, "removed", "cycling")
		lease.Release()
	}
	cancel()
	require.NoError(t, <-done)

	var open int64
	require.Eventually(t, func() bool {
		open = servers[0].open.Load() + servers[1].open.Load()
		return open == 0
	}, 10*time.Second, 10*time.Millisecond, "server connections still open: %d", open)
	// Goroutines and descriptors wind down as connections finish closing.
	// Polled here rather than with assert.Eventually, whose own goroutine
	// would be counted.
	settled := false
	for deadline := time.Now().Add(10 * time.Second); !settled && time.Now().Before(deadline); {
		settled = runtime.NumGoroutine() <= baseGoroutines && openFDs(t) <= baseFDs
		time.Sleep(10 * time.Millisecond)
	}
	if !settled {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines %d (were %d), fds %d (were %d)\n%s", runtime.NumGoroutine(), baseGoroutines,
			openFDs(t), baseFDs, buf[:runtime.Stack(buf, true)])
	}
	assert.Greater(t, servers[0].requests.Load()+servers[1].requests.Load(), int64(2*cycles))
	require.NoError(t, goleak.Find(goleak.IgnoreCurrent()))
}

func mustSync(t *testing.T, s *clusterregistry.Syncer[*clusterregistry.Client], what, name string) {
	t.Helper()
	rep, err := s.Sync(context.Background())
	require.NoError(t, err)
	var got []string
	switch what {
	case "added":
		got = rep.Added
	case "updated":
		got = rep.Updated
	case "removed":
		got = rep.Removed
	}
	require.Equal(t, []string{name}, got, "%s: %+v", what, rep)
}

func newClientKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func selfSignedCert(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestClientSurvivesAMissingTokenFile removes a config's token file between
// the build and the first use, as happens for a moment when a projected
// service-account token or a kubeconfig's tokenFile is rewritten. Nothing may
// panic; requests fail with an error that names the cluster and the field,
// and the client works again once the file is back.
func TestClientSurvivesAMissingTokenFile(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(srv.Token()), 0o600))
	cfg := &rest.Config{Host: srv.URL(), BearerTokenFile: tokenFile, TLSClientConfig: rest.TLSClientConfig{CAData: srv.CAData()}}
	ctx := context.Background()
	b := clusterregistry.ClientBuilder{}
	c, err := b.Build(ctx, clusterregistry.Cluster{Name: "flaky", Config: cfg})
	require.NoError(t, err)
	defer b.Release(c)

	require.NoError(t, os.Remove(tokenFile))
	var errs []error
	assert.NotPanics(t, func() {
		_, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		errs = append(errs, err)
		_, err = c.Discovery().ServerVersion()
		errs = append(errs, err)
		_, err = c.Dynamic().Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).List(ctx, metav1.ListOptions{})
		errs = append(errs, err)
		errs = append(errs, clusterregistry.ClientBuilder{}.Probe(ctx, c))
	})
	require.Len(t, errs, 4)
	for _, err := range errs {
		require.Error(t, err)
		assert.Contains(t, err.Error(), `cluster "flaky"`)
		assert.Contains(t, err.Error(), "field config.bearerTokenFile")
		assert.NotContains(t, err.Error(), srv.Token())
	}
	kube := c.Kubernetes()

	require.NoError(t, os.WriteFile(tokenFile, []byte(srv.Token()), 0o600))
	assert.NotPanics(t, func() {
		_, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		assert.NoError(t, err, "a clientset handed out while the file was missing")
		_, err = c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		assert.NoError(t, err)
		assert.NoError(t, clusterregistry.ClientBuilder{}.Probe(ctx, c))
	})
}

// TestReleaseClosesBusyConnectionsWhenTheyEnd holds a request in flight, or a
// response body open, across Release: the connection must close as soon as
// the request ends, not when the transport's idle timeout (90s) ends it.
func TestReleaseClosesBusyConnectionsWhenTheyEnd(t *testing.T) {
	tests := []struct {
		name string
		give func(t *testing.T, srv *clusterregistrytest.Server, c *clusterregistry.Client, release func())
	}{
		{"request in flight", func(t *testing.T, srv *clusterregistrytest.Server, c *clusterregistry.Client, release func()) {
			before := srv.Requests()
			srv.BlackHole()
			done := make(chan error, 1)
			go func() {
				_, err := c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
				done <- err
			}()
			require.Eventually(t, func() bool { return srv.Requests() > before }, 10*time.Second, time.Millisecond)
			release()
			srv.Heal()
			require.NoError(t, <-done)
		}},
		{"body open", func(t *testing.T, srv *clusterregistrytest.Server, c *clusterregistry.Client, release func()) {
			resp, err := c.HTTPClient().Get(srv.URL() + "/api/v1/namespaces")
			require.NoError(t, err)
			release()
			require.NoError(t, resp.Body.Close())
		}},
		{"request after release", func(t *testing.T, srv *clusterregistrytest.Server, c *clusterregistry.Client, release func()) {
			release()
			_, err := c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := clusterregistrytest.NewServer(t)
			b := clusterregistry.ClientBuilder{}
			c, err := b.Build(context.Background(), srv.Cluster("busy"))
			require.NoError(t, err)
			_, err = c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err, "the client's own connection is open")
			require.Eventually(t, func() bool { return srv.Connections() == 1 }, 10*time.Second, time.Millisecond)

			tt.give(t, srv, c, func() { b.Release(c) })
			// Well under the idle timeout: only the server's noticing the
			// close takes time.
			assert.Eventually(t, func() bool { return srv.Connections() == 0 }, 2*time.Second, time.Millisecond,
				"connections open: %d", srv.Connections())
		})
	}
}

// TestBuildLeavesNoConnection: the version check's connection closes with
// its response, and the client opens its own at its first request.
func TestBuildLeavesNoConnection(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{}
	c, err := b.Build(context.Background(), srv.Cluster("one"))
	require.NoError(t, err)
	defer b.Release(c)
	assert.Equal(t, int64(1), srv.Requests())
	assert.Eventually(t, func() bool { return srv.Connections() == 0 }, 2*time.Second, time.Millisecond,
		"connections open: %d", srv.Connections())

	_, err = c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), srv.Connections(), "the client's own")
}

// TestClientBuilderSkipVersionCheck builds without a request: an unreachable
// cluster builds, and fails at its first request instead.
func TestClientBuilderSkipVersionCheck(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{SkipVersionCheck: true}
	c, err := b.Build(context.Background(), srv.Cluster("one"))
	require.NoError(t, err)
	defer b.Release(c)
	assert.Zero(t, srv.Requests())
	assert.Zero(t, c.ServerVersion())
	v, err := c.Discovery().ServerVersion()
	require.NoError(t, err)
	assert.Equal(t, clusterregistrytest.ServerVersion.GitVersion, v.GitVersion)

	cfg := srv.Config()
	cfg.Host = "https://127.0.0.1:1"
	down, err := b.Build(context.Background(), clusterregistry.Cluster{Name: "down", Config: cfg})
	require.NoError(t, err)
	defer b.Release(down)
	_, err = down.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	assert.ErrorContains(t, err, "connection refused")

	cfg.Host = "https://bad host"
	_, err = b.Build(context.Background(), clusterregistry.Cluster{Name: "bad", Config: cfg})
	assert.ErrorContains(t, err, "field config.host")
}

// TestBuildsLeaveLittleBehind builds and releases clients, never used, as a
// rotation storm does, and weighs what stays reachable right after: a check
// over HTTP/2 left about 27 KB a build for 30s (the closed connection, held by
// client-go's health-check timer).
func TestBuildsLeaveLittleBehind(t *testing.T) {
	const builds = 200
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{}
	before := heapInUse()
	for range builds {
		c, err := b.Build(context.Background(), srv.Cluster("one"))
		require.NoError(t, err)
		b.Release(c)
	}
	per := (float64(heapInUse()) - float64(before)) / builds
	t.Logf("%.0f bytes reachable a build", per)
	assert.Less(t, per, 4096.0, "bytes reachable a build")
}
