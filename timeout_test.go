package clusterregistry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestRequestTimeoutDefaults(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	tests := []struct {
		name       string
		give       time.Duration // ClientBuilder.RequestTimeout
		giveConfig time.Duration // rest.Config.Timeout
		want       time.Duration // what the transport applies
		wantClient time.Duration // http.Client.Timeout, client-go's way
	}{
		{name: "default", want: 30 * time.Second},
		{name: "set", give: 5 * time.Second, want: 5 * time.Second},
		{name: "disabled", give: -1},
		{name: "config's own", give: 5 * time.Second, giveConfig: 7 * time.Second, wantClient: 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := srv.Config()
			cfg.Timeout = tt.giveConfig
			b := clusterregistry.ClientBuilder{RequestTimeout: tt.give, SkipVersionCheck: true}
			c, err := b.Build(context.Background(), clusterregistry.Cluster{Name: "one", Config: cfg})
			require.NoError(t, err)
			defer b.Release(c)
			assert.Equal(t, tt.want, clusterregistry.RequestTimeoutOf(c))
			assert.Equal(t, tt.wantClient, c.HTTPClient().Timeout)
		})
	}
}

func TestRequestTimeoutEndsAHangingRequest(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{RequestTimeout: 100 * time.Millisecond}
	c, err := b.Build(context.Background(), srv.Cluster("hung"))
	require.NoError(t, err)
	defer b.Release(c)

	srv.SetDelay(time.Hour) // until the client gives up
	_, err = c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	srv.Heal()
	ns, err := c.Kubernetes().CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err, "a request that answers in time is not bounded by the last one's timeout")
	assert.Len(t, ns.Items, 1)
}

func TestRequestTimeoutLeavesWatchesAlone(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	b := clusterregistry.ClientBuilder{RequestTimeout: 50 * time.Millisecond}
	c, err := b.Build(context.Background(), srv.Cluster("slow"))
	require.NoError(t, err)
	defer b.Release(c)

	// The test server answers a watch as a list, after the delay: what
	// matters is that the request is not cut at 50ms.
	srv.SetDelay(300 * time.Millisecond)
	rc := c.Kubernetes().CoreV1().RESTClient()
	for _, stream := range []string{"watch", "follow"} {
		_, err = rc.Get().Resource("namespaces").Param(stream, "true").DoRaw(context.Background())
		assert.NoError(t, err, stream)
	}
	_, err = rc.Get().AbsPath("/api/v1/watch/namespaces").DoRaw(context.Background())
	assert.Error(t, err, "served 404 by the test server, after its delay")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "a /watch/ path is a stream")
	_, err = rc.Get().Resource("namespaces").Param("watch", "false").DoRaw(context.Background())
	assert.ErrorIs(t, err, context.DeadlineExceeded, "watch=false is no stream")
}
