package metrics_test

import (
	"context"
	"io"
	"maps"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/examples/internal/metrics"
)

func TestMetricsFromASyncer(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	src := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "ok", Config: &rest.Config{Host: "https://ok"}},
		clusterregistry.Cluster{Name: "bad", Config: &rest.Config{Host: "https://bad"}},
	)
	builder := clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) {
			if c.Name == "bad" {
				return "", io.ErrUnexpectedEOF
			}
			return c.Name, nil
		},
		ProbeFunc: func(context.Context, string) error { return nil },
	}
	syncer, err := clusterregistry.NewSyncer(src, builder, clusterregistry.WithObserver(m),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{}))
	require.NoError(t, err)
	m.WatchClusters(func() []clusterregistry.ClusterInfo { return slices.Collect(syncer.Registry().Snapshot().Clusters()) })
	_, err = syncer.Sync(context.Background())
	require.NoError(t, err)
	require.NoError(t, syncer.Probe(context.Background()))

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`clusterregistry_build_failures_total{cluster="bad"} 1`,
		`clusterregistry_build_duration_seconds_count{result="ok"} 1`,
		`clusterregistry_sync_duration_seconds_count 1`,
		`clusterregistry_sync_lock_hold_seconds_count 1`,
		`clusterregistry_clusters{state="serving"} 1`,
		`clusterregistry_clusters{state="unavailable"} 1`,
		`clusterregistry_clusters{state="health_Ready"} 1`,
		`clusterregistry_health_changes_total{to="Ready"} 1`,
		`clusterregistry_probe_duration_seconds_count{result="ok"} 1`,
	} {
		assert.Contains(t, body, want)
	}
}

func TestRequestMetricsByCluster(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{Observer: m}
	c, err := b.Build(context.Background(), srv.Cluster("prod"))
	require.NoError(t, err)
	defer b.Release(c)
	_, err = c.Kubernetes().CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	_, err = c.Kubernetes().CoreV1().Namespaces().Get(context.Background(), "gone", metav1.GetOptions{})
	require.Error(t, err)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`clusterregistry_requests_total{cluster="prod",code="200",resource="pods",verb="list"} 1`,
		`clusterregistry_requests_total{cluster="prod",code="404",resource="namespaces",verb="get"} 1`,
		`clusterregistry_request_duration_seconds_count{cluster="prod",verb="list"} 1`,
	} {
		assert.Contains(t, body, want)
	}
	assert.NotContains(t, body, "gone", "no object name in a label")
}

func TestRecentRequests(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	now := time.Date(2026, 12, 2, 20, 0, 5, 0, time.UTC) // 5s into a 10s slot
	metrics.SetClock(m, func() time.Time { return now })
	done := func(cluster string, code int, latency time.Duration) {
		m.RequestDone(cluster, clusterregistry.RequestInfo{Verb: "list", Resource: "pods", Code: code, Latency: latency})
	}
	for range 98 {
		done("prod", 200, 2*time.Millisecond)
	}
	done("prod", 503, 30*time.Millisecond)
	done("prod", 0, 3*time.Second) // no response
	done("old", 200, time.Millisecond)

	now = now.Add(50 * time.Second) // the window: 55s, every request still in it
	done("staging", 200, 100*time.Millisecond)
	got := m.RecentRequests()
	require.Contains(t, got, "prod")
	prod := got["prod"]
	assert.Equal(t, 100, prod.Requests)
	assert.InDelta(t, 100.0/55, prod.PerSecond, 1e-9)
	assert.Equal(t, 2, prod.Errors)
	assert.InDelta(t, (98*2+30+3000)/100.0, prod.MeanMs, 1e-9)
	assert.Equal(t, 64.0, prod.P99Ms, "the 99th of 100 is in the 16-64 ms bucket")
	assert.Equal(t, metrics.RequestStats{Requests: 1, PerSecond: 1.0 / 55, MeanMs: 100, P99Ms: 100}, got["staging"],
		"the bound is the slowest request when that is lower")

	// A minute later the first slot has gone: only staging is left, and a
	// cluster with no request is dropped.
	now = now.Add(10 * time.Second)
	got = m.RecentRequests()
	assert.Equal(t, []string{"staging"}, slices.Collect(maps.Keys(got)))

	rec := httptest.NewRecorder()
	m.RecentHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/requests", nil))
	assert.JSONEq(t, `{"staging":{"requests":1,"perSecond":0.01818181818181818,"errors":0,"meanMs":100,"p99Ms":100}}`, rec.Body.String())
}
