package httpcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fanout"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

func TestFanOutHandlerServesPartialResults(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Fail("broken", errors.New("server version: connection refused"))
	source := clusterregistrytest.NewSource()
	for _, name := range []string{"prod", "staging", "broken", "slow", "locked", "dead"} {
		c := clusterregistrytest.NewCluster(name)
		c.Labels = map[string]string{"tier": map[bool]string{true: "prod", false: "other"}[name == "prod"]}
		source.Upsert(c)
	}
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fn := func(ctx context.Context, name string, _ *clusterregistrytest.FakeClient) (int, error) {
		switch name {
		case "slow":
			<-ctx.Done()
			return 0, ctx.Err()
		case "locked":
			return 0, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no"))
		case "dead":
			return 0, &clusterregistry.UnreachableError{Name: name, Since: since, Err: context.DeadlineExceeded}
		}
		return len(name), nil
	}
	h := httpcluster.FanOutHandler(syncer.Registry(), fn, fanout.WithTimeout(10*time.Millisecond))

	var got httpcluster.FanOutList[int]
	require.Equal(t, http.StatusOK, serve(t, h, "GET", "/overview", &got))
	byName := map[string]httpcluster.FanOutResult[int]{}
	var names []string
	for _, c := range got.Clusters {
		byName[c.Name] = c
		names = append(names, c.Name)
	}
	assert.Equal(t, []string{"broken", "dead", "locked", "prod", "slow", "staging"}, names)
	assert.Equal(t, 4, got.Failed)
	require.NotNil(t, byName["prod"].Value)
	assert.Equal(t, 4, *byName["prod"].Value)
	assert.Empty(t, byName["prod"].Error)
	assert.Nil(t, byName["broken"].Value)
	assert.Contains(t, byName["broken"].Error, `cluster "broken"`)
	assert.True(t, byName["slow"].TimedOut)
	assert.Contains(t, byName["slow"].Error, `cluster "slow"`)
	assert.Equal(t, http.StatusForbidden, byName["locked"].Status)
	assert.True(t, byName["dead"].Unreachable)
	assert.Equal(t, since, byName["dead"].Since)

	got = httpcluster.FanOutList[int]{}
	require.Equal(t, http.StatusOK, serve(t, h, "GET", "/overview?cluster=prod&cluster=staging", &got))
	assert.Len(t, got.Clusters, 2)
	got = httpcluster.FanOutList[int]{}
	require.Equal(t, http.StatusOK, serve(t, h, "GET", "/overview?selector=tier%3Dprod", &got))
	require.Len(t, got.Clusters, 1)
	assert.Equal(t, "prod", got.Clusters[0].Name)
	assert.Equal(t, http.StatusBadRequest, serve(t, h, "GET", "/overview?selector=%21%21", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, serve(t, h, "POST", "/overview", nil))
}

func serve(t *testing.T, h http.Handler, method, target string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	if v != nil {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), v))
	}
	return rec.Code
}
