package clusterregistry_test

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

// A released client's last request is a stream (a watch) over HTTP/2 whose
// context ends before its body is closed, as a worker's does when it stops:
// its connection still closes at once, not at the transport's idle timeout
// (90s). Found by the soak (test/soak): HTTP/2's Body.Close returns before
// the stream has left the connection when the request's context is done, so
// closing the idle connections right then missed it.
func TestReleasedClientClosesHTTP2StreamConnection(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"type":"ADDED","object":{}}` + "\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg := &rest.Config{Host: srv.URL, BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}

	builder := clusterregistry.ClientBuilder{SkipVersionCheck: true}
	client, err := builder.Build(t.Context(), clusterregistry.Cluster{Name: "c", Config: cfg})
	require.NoError(t, err)

	for range 20 {
		ctx, cancel := context.WithCancel(t.Context())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/namespaces?watch=true", nil)
		require.NoError(t, err)
		resp, err := client.HTTPClient().Do(req)
		require.NoError(t, err)
		require.Equal(t, 2, resp.ProtoMajor, "the stream runs over HTTP/2")
		buf := make([]byte, 16)
		_, err = resp.Body.Read(buf)
		require.NoError(t, err)
		cancel()                              // the worker stops...
		require.NoError(t, resp.Body.Close()) // ...then stops its watch
	}
	builder.Release(client)
	assert.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the released client's connection is closed (open: %d)", open.Load())
}
