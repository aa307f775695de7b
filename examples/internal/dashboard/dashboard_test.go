package dashboard_test

// These tests show how a downstream service tests its multi-cluster code with
// clusterregistrytest: fake clusters seeded with objects, a Syncer that runs
// for the length of the test, and a leak check, in a few lines each.

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/examples/internal/dashboard"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

func TestMain(m *testing.M) { clusterregistrytest.VerifyTestMain(m) }

func pod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
}

// newDashboard serves the dashboard over prod (the default) and staging.
func newDashboard(t *testing.T, source clusterregistry.ClusterSource) (*httptest.Server, *clusterregistrytest.FakeBuilder) {
	t.Helper()
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("prod", namespace("shop"), pod("shop", "web-1"), pod("shop", "web-2"))
	builder.Seed("staging", namespace("shop"), namespace("qa"), pod("qa", "smoke"))
	builder.Fail("broken", errors.New("server version: connection refused"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	srv := httptest.NewServer(dashboard.New(syncer))
	t.Cleanup(srv.Close)
	return srv, builder
}

func get(t *testing.T, srv *httptest.Server, path string, v any) int {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	if v != nil {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}

func TestDashboardPerClusterEndpoints(t *testing.T) {
	source := clusterregistrytest.NewSource(
		clusterregistrytest.NewDefaultCluster("prod"),
		clusterregistrytest.NewCluster("staging"),
		clusterregistrytest.NewCluster("broken"))
	srv, _ := newDashboard(t, source)

	var pods struct {
		Cluster string          `json:"cluster"`
		Pods    []dashboard.Pod `json:"pods"`
	}
	require.Equal(t, http.StatusOK, get(t, srv, "/api/pods", &pods))
	assert.Equal(t, "prod", pods.Cluster, "the default cluster")
	assert.Equal(t, []dashboard.Pod{
		{Namespace: "shop", Name: "web-1", Phase: "Running"},
		{Namespace: "shop", Name: "web-2", Phase: "Running"},
	}, pods.Pods)

	require.Equal(t, http.StatusOK, get(t, srv, "/api/pods?cluster=staging&namespace=qa", &pods))
	assert.Equal(t, "staging", pods.Cluster)
	assert.Equal(t, []dashboard.Pod{{Namespace: "qa", Name: "smoke", Phase: "Running"}}, pods.Pods)

	var namespaces struct {
		Namespaces []dashboard.Namespace `json:"namespaces"`
	}
	require.Equal(t, http.StatusOK, get(t, srv, "/api/namespaces?cluster=staging", &namespaces))
	assert.Equal(t, []dashboard.Namespace{{Name: "qa", Phase: "Active"}, {Name: "shop", Phase: "Active"}}, namespaces.Namespaces)

	var apiErr struct {
		Cluster string `json:"cluster"`
		Error   string `json:"error"`
	}
	assert.Equal(t, http.StatusNotFound, get(t, srv, "/api/pods?cluster=dev", &apiErr))
	assert.Equal(t, "dev", apiErr.Cluster)
	assert.Equal(t, http.StatusServiceUnavailable, get(t, srv, "/api/pods?cluster=broken", &apiErr))
	assert.Contains(t, apiErr.Error, "connection refused")
}

func TestDashboardOverviewShowsEveryClusterAtOnce(t *testing.T) {
	source := clusterregistrytest.NewSource(
		clusterregistrytest.NewDefaultCluster("prod"),
		clusterregistrytest.NewCluster("staging"),
		clusterregistrytest.NewCluster("broken"))
	srv, _ := newDashboard(t, source)

	var list httpcluster.FanOutList[dashboard.Overview]
	require.Equal(t, http.StatusOK, get(t, srv, "/api/overview", &list))
	require.Len(t, list.Clusters, 3)
	assert.Equal(t, 1, list.Failed)
	broken, prod, staging := list.Clusters[0], list.Clusters[1], list.Clusters[2]
	assert.Contains(t, broken.Error, `cluster "broken"`)
	assert.Nil(t, broken.Value)
	require.NotNil(t, prod.Value)
	assert.Equal(t, dashboard.Overview{Namespaces: 1, Pods: 2, Running: 2}, *prod.Value)
	require.NotNil(t, staging.Value)
	assert.Equal(t, dashboard.Overview{Namespaces: 2, Pods: 1, Running: 1}, *staging.Value)
}

// Over real (local) API servers and the library's ClientBuilder: once the
// health check has found a black-holed cluster unreachable, the overview
// shows it as down, with since when, and its client is not asked.
func TestDashboardOverviewShowsADownCluster(t *testing.T) {
	live, dead := clusterregistrytest.NewServer(t), clusterregistrytest.NewServer(t)
	source := clusterregistrytest.NewSource(live.Cluster("live"), dead.Cluster("dead"))
	dead.BlackHole()
	hc := clusterregistry.HealthCheck{Interval: time.Hour, Timeout: 200 * time.Millisecond, FailureThreshold: 1}
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistry.ClientBuilder{SkipVersionCheck: true},
		clusterregistry.WithHealthCheck(hc))
	// Run's first probe round, the only one in this test (its interval is an
	// hour): once it has stored the health, its requests have all been made.
	require.Eventually(t, func() bool {
		h, _ := syncer.Registry().Health("dead")
		return h.State == clusterregistry.HealthUnreachable
	}, 10*time.Second, time.Millisecond)
	srv := httptest.NewServer(dashboard.New(syncer))
	t.Cleanup(srv.Close)

	asked := dead.Requests()
	var list httpcluster.FanOutList[dashboard.Overview]
	require.Equal(t, http.StatusOK, get(t, srv, "/api/overview", &list))
	require.Len(t, list.Clusters, 2)
	down, up := list.Clusters[0], list.Clusters[1]
	assert.True(t, down.Unreachable, "%+v", down)
	assert.False(t, down.Since.IsZero())
	assert.Contains(t, down.Error, `cluster "dead": unreachable since`)
	assert.Equal(t, asked, dead.Requests(), "the dead cluster was asked")
	require.NotNil(t, up.Value, "%+v", up)
	assert.Equal(t, 1, up.Value.Namespaces)
}

func TestDashboardSyncButtonRemovesCluster(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"), clusterregistrytest.NewCluster("staging"))
	// Hide the source's Watch: only the dashboard's sync endpoint (and the
	// 30s interval) may sync.
	srv, builder := newDashboard(t, clusterregistry.SourceFunc(source.List))

	var list httpcluster.ClusterList
	require.Equal(t, http.StatusOK, get(t, srv, "/api/clusters", &list))
	require.Len(t, list.Clusters, 2)

	source.Delete("staging")
	require.Equal(t, http.StatusOK, get(t, srv, "/api/clusters", &list))
	assert.Len(t, list.Clusters, 2, "no sync yet")

	resp, err := srv.Client().Post(srv.URL+"/api/sync", "", nil)
	require.NoError(t, err)
	var rep struct {
		Generation uint64   `json:"generation"`
		Removed    []string `json:"removed"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rep))
	resp.Body.Close()
	assert.Equal(t, []string{"staging"}, rep.Removed)
	assert.Equal(t, uint64(2), rep.Generation)
	assert.True(t, builder.Client("staging").Released())

	require.Equal(t, http.StatusOK, get(t, srv, "/api/clusters", &list))
	require.Len(t, list.Clusters, 1)
	assert.Equal(t, "prod", list.Clusters[0].Name)
}

func TestDashboardPage(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"), clusterregistrytest.NewCluster("broken"))
	srv, _ := newDashboard(t, source)

	resp, err := srv.Client().Get(srv.URL + "/")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	page := string(body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, page, `<tr data-cluster="prod">`)
	assert.Contains(t, page, `<tr data-cluster="broken">`)
	assert.Contains(t, page, clusterregistrytest.DefaultVersion.GitVersion)
	assert.Contains(t, page, `cluster &#34;broken&#34;: server version: connection refused`)
	assert.False(t, strings.Contains(page, "token-"), "no credential on the page")

	assert.Equal(t, http.StatusNotFound, get(t, srv, "/nothing", nil))
}
