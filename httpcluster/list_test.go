package httpcluster_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

func pod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

func getList(t *testing.T, h http.Handler) httpcluster.ClusterList {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/clusters", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var l httpcluster.ClusterList
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &l))
	return l
}

func TestListHandler(t *testing.T) {
	epoch := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakeClock(epoch)
	prod := clusterregistrytest.NewDefaultCluster("prod")
	prod.Labels = map[string]string{"env": "production"}
	source := clusterregistrytest.NewSource(prod, clusterregistrytest.NewCluster("staging"), clusterregistrytest.NewCluster("broken"))
	syncer, builder := newSyncer(t, source, clusterregistry.WithClock(clock))
	builder.SetVersion("staging", version.Info{GitVersion: "v1.36.1"})
	h := httpcluster.ListHandler(syncer.Registry())

	l := getList(t, h)
	assert.Equal(t, uint64(1), l.Generation)
	assert.Equal(t, "prod", l.Default)
	assert.Empty(t, l.DefaultError)
	assert.Empty(t, l.SourceError)
	assert.True(t, l.SyncedAt.Equal(epoch))
	require.Len(t, l.Clusters, 3)
	assert.Equal(t, httpcluster.ClusterStatus{
		Name: "broken", Error: `cluster "broken": server version: dial tcp 10.0.0.9:6443: connection refused`,
	}, l.Clusters[0])
	assert.Equal(t, httpcluster.ClusterStatus{
		Name: "prod", Default: true, Serving: true, ServerVersion: clusterregistrytest.DefaultVersion.GitVersion,
		Generation: 1, BuiltAt: epoch, Labels: map[string]string{"env": "production"},
	}, normalize(l.Clusters[1]))
	assert.Equal(t, "staging", l.Clusters[2].Name)
	assert.Equal(t, clusterregistrytest.DefaultVersion.GitVersion, l.Clusters[2].ServerVersion, "built before SetVersion")

	// A rebuild shows in the cluster's generation; the others keep theirs.
	source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("staging"), "rotated"))
	clusterregistrytest.Sync(t, syncer)
	l = getList(t, h)
	assert.Equal(t, uint64(2), l.Generation)
	assert.Equal(t, uint64(1), l.Clusters[1].Generation)
	assert.Equal(t, uint64(2), l.Clusters[2].Generation)
	assert.Equal(t, "v1.36.1", l.Clusters[2].ServerVersion)

	// A failing source: the last good clusters, and the error.
	source.Fail(errStore)
	_, err := syncer.Sync(context.Background())
	require.Error(t, err)
	l = getList(t, h)
	assert.Len(t, l.Clusters, 3)
	assert.Equal(t, "list clusters: store unreachable", l.SourceError)
}

// normalize drops the monotonic clock reading that JSON loses anyway.
func normalize(cs httpcluster.ClusterStatus) httpcluster.ClusterStatus {
	cs.BuiltAt = cs.BuiltAt.UTC()
	return cs
}

var errStore = errorString("store unreachable")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestListHandlerWithoutDefaultOrVersion(t *testing.T) {
	// A client type with no ServerVersion method.
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"), clusterregistrytest.NewCluster("b"))
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
	})
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)

	l := getList(t, httpcluster.ListHandler(syncer.Registry()))
	assert.Empty(t, l.Default)
	assert.Equal(t, "no default cluster", l.DefaultError)
	require.Len(t, l.Clusters, 2)
	assert.Empty(t, l.Clusters[0].ServerVersion)
	assert.True(t, l.Clusters[0].Serving)
}

func TestListHandlerEmptyAndMethods(t *testing.T) {
	syncer, err := clusterregistry.NewSyncer(clusterregistrytest.NewSource(), clusterregistrytest.NewFakeBuilder())
	require.NoError(t, err)
	h := httpcluster.ListHandler(syncer.Registry())

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.JSONEq(t, `{"generation":0,"defaultError":"no default cluster","clusters":[]}`, rec.Body.String())

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
}

func TestListHandlerHealth(t *testing.T) {
	epoch := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakeClock(epoch)
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("up"), clusterregistrytest.NewCluster("down"))
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Name, nil },
		ProbeFunc: func(_ context.Context, client string) error {
			if client == "down" {
				return errorString("dial tcp 10.0.0.9:6443: i/o timeout")
			}
			return nil
		},
	}, clusterregistry.WithClock(clock),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{FailureThreshold: 1}))
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)
	h := httpcluster.ListHandler(syncer.Registry())

	l := getList(t, h)
	require.Len(t, l.Clusters, 2)
	assert.Nil(t, l.Clusters[0].Health, "never probed")

	clock.Step(time.Minute)
	require.NoError(t, syncer.Probe(context.Background()))
	l = getList(t, h)
	require.Len(t, l.Clusters, 2)
	require.NotNil(t, l.Clusters[0].Health)
	assert.Equal(t, "Unreachable", l.Clusters[0].Health.State)
	assert.True(t, l.Clusters[0].Health.Since.Equal(epoch.Add(time.Minute)))
	assert.Equal(t, "dial tcp 10.0.0.9:6443: i/o timeout", l.Clusters[0].Health.Error)
	require.NotNil(t, l.Clusters[1].Health)
	assert.Equal(t, httpcluster.HealthStatus{State: "Ready", Since: l.Clusters[1].Health.Since}, *l.Clusters[1].Health)
}
