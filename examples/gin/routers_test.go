package main

// httpcluster's middleware behind gin, chi and echo: the same status codes,
// the same client in the handler, and the lease held until the handler ends.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	clusterregistrytest.VerifyTestMain(m)
}

type fake = *clusterregistrytest.FakeClient

// fixture is a Registry of prod (the default, 2 pods) and staging (1 pod),
// synced by the test alone.
type fixture struct {
	source  *clusterregistrytest.Source
	builder *clusterregistrytest.FakeBuilder
	syncer  *clusterregistry.Syncer[fake]
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		source:  clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"), clusterregistrytest.NewCluster("staging")),
		builder: clusterregistrytest.NewFakeBuilder(),
	}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
	}
	f.builder.Seed("prod", pod("web-1"), pod("web-2"))
	f.builder.Seed("staging", pod("web-1"))
	var err error
	f.syncer, err = clusterregistry.NewSyncer(f.source, f.builder)
	require.NoError(t, err)
	clusterregistrytest.Sync(t, f.syncer)
	return f
}

// rotateDuringRequest is a handler body: it replaces its own cluster's client
// while the request runs, and reports whether its client was released
// meanwhile.
func (f *fixture) rotateDuringRequest(t *testing.T, ctx context.Context) (pods int, releasedDuring bool) {
	client, ok := httpcluster.Client[fake](ctx)
	require.True(t, ok)
	name, _ := httpcluster.ClusterName(ctx)
	f.source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster(name), "rotated-"+t.Name()))
	rep, err := f.syncer.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{name}, rep.Updated)
	list, err := client.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	return len(list.Items), client.Released()
}

func TestRouters(t *testing.T) {
	routers := []struct {
		name  string
		build func(*testing.T, *fixture) http.Handler
	}{
		{"gin", func(t *testing.T, f *fixture) http.Handler {
			r := gin.New()
			r.GET("/pods", fromHTTP(httpcluster.New(f.syncer.Registry()).Handler), func(c *gin.Context) {
				pods, released := f.rotateDuringRequest(t, c.Request.Context())
				c.JSON(http.StatusOK, gin.H{"pods": pods, "released": released})
			})
			return r
		}},
		{"chi", func(t *testing.T, f *fixture) http.Handler {
			r := chi.NewRouter()
			r.Use(httpcluster.New(f.syncer.Registry()).Handler)
			r.Get("/pods", func(w http.ResponseWriter, r *http.Request) {
				pods, released := f.rotateDuringRequest(t, r.Context())
				_ = json.NewEncoder(w).Encode(map[string]any{"pods": pods, "released": released})
			})
			return r
		}},
		{"echo", func(t *testing.T, f *fixture) http.Handler {
			e := echo.New()
			e.Use(echo.WrapMiddleware(httpcluster.New(f.syncer.Registry()).Handler))
			e.GET("/pods", func(c echo.Context) error {
				pods, released := f.rotateDuringRequest(t, c.Request().Context())
				return c.JSON(http.StatusOK, map[string]any{"pods": pods, "released": released})
			})
			return e
		}},
	}
	requests := []struct {
		target     string
		header     string
		wantStatus int
		wantPods   int
		wantLeased string // the cluster whose old client must be released after the request
	}{
		{target: "/pods", wantStatus: 200, wantPods: 2, wantLeased: "prod"},
		{target: "/pods?cluster=staging", wantStatus: 200, wantPods: 1, wantLeased: "staging"},
		{target: "/pods", header: "staging", wantStatus: 200, wantPods: 1, wantLeased: "staging"},
		{target: "/pods?cluster=dev", wantStatus: 404},
	}
	for _, router := range routers {
		for _, tt := range requests {
			t.Run(router.name+" "+tt.target+" "+tt.header, func(t *testing.T) {
				f := newFixture(t)
				h := router.build(t, f)
				var before fake
				if tt.wantLeased != "" {
					before = f.builder.Client(tt.wantLeased)
				}
				req := httptest.NewRequest(http.MethodGet, tt.target, nil)
				if tt.header != "" {
					req.Header.Set(httpcluster.DefaultHeader, tt.header)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)

				require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
				var body struct {
					Pods     int    `json:"pods"`
					Released bool   `json:"released"`
					Cluster  string `json:"cluster"`
				}
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
				if tt.wantStatus != http.StatusOK {
					assert.Equal(t, "dev", body.Cluster)
					return
				}
				assert.Equal(t, tt.wantPods, body.Pods)
				assert.False(t, body.Released, "the client was released while the handler ran")
				assert.True(t, before.Released(), "the replaced client is released once the request ends")
			})
		}
	}
}

func TestGinRouter(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(newRouter(f.syncer.Registry()))
	t.Cleanup(srv.Close)

	get := func(path string, v any) int {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		return resp.StatusCode
	}
	var pods struct {
		Cluster string   `json:"cluster"`
		Pods    []string `json:"pods"`
	}
	require.Equal(t, http.StatusOK, get("/api/pods?cluster=staging", &pods))
	assert.Equal(t, "staging", pods.Cluster)
	assert.Equal(t, []string{"shop/web-1"}, pods.Pods)
	require.Equal(t, http.StatusOK, get("/api/pods", &pods))
	assert.Equal(t, "prod", pods.Cluster)

	var list httpcluster.ClusterList
	require.Equal(t, http.StatusOK, get("/clusters", &list))
	assert.Len(t, list.Clusters, 2)

	var apiErr map[string]any
	assert.Equal(t, http.StatusNotFound, get("/api/pods?cluster=dev", &apiErr))
	srv.Client().CloseIdleConnections()
}
