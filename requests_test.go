package clusterregistry_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

// recorder is a RequestObserver that keeps what it heard.
type recorder struct {
	clusterregistry.NopObserver
	mu       sync.Mutex // protects requests
	requests []heard
}

type heard struct {
	cluster string
	info    clusterregistry.RequestInfo
}

func (r *recorder) RequestDone(cluster string, info clusterregistry.RequestInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, heard{cluster, info})
}

func (r *recorder) take() []heard {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.requests
	r.requests = nil
	return out
}

func TestRequestObserverHearsEveryRequest(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	rec := &recorder{}
	b := clusterregistry.ClientBuilder{Observer: rec, RequestTimeout: 100 * time.Millisecond}
	c, err := b.Build(context.Background(), srv.Cluster("prod"))
	require.NoError(t, err)
	defer b.Release(c)
	assert.Empty(t, rec.take(), "the build's version check is not the client's request")

	ctx := context.Background()
	_, err = c.Kubernetes().CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	_, err = c.Kubernetes().CoreV1().Namespaces().Get(ctx, "gone", metav1.GetOptions{})
	require.Error(t, err)
	srv.SetDelay(time.Hour)
	_, err = c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := rec.take()
	require.Len(t, got, 3)
	for _, h := range got {
		assert.Equal(t, "prod", h.cluster)
		assert.Positive(t, h.info.Latency)
	}
	assert.Equal(t, want("list", "", "v1", "pods", "", http.StatusOK), strip(got[0].info))
	assert.Equal(t, want("get", "", "v1", "namespaces", "", http.StatusNotFound), strip(got[1].info))
	assert.Equal(t, want("list", "", "v1", "namespaces", "", 0), strip(got[2].info))
	assert.ErrorIs(t, got[2].info.Err, context.DeadlineExceeded)
}

func want(verb, group, version, resource, sub string, code int) clusterregistry.RequestInfo {
	return clusterregistry.RequestInfo{Verb: verb, Group: group, Version: version, Resource: resource, Subresource: sub, Code: code}
}

func strip(info clusterregistry.RequestInfo) clusterregistry.RequestInfo {
	info.Latency, info.Err = 0, nil
	return info
}
