package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/examples/internal/dashboard"
)

// streamEvents opens GET /api/events and returns its events, read by a
// goroutine that ends with the stream.
func streamEvents(t *testing.T, ctx context.Context, url string) <-chan dashboard.Event {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	out := make(chan dashboard.Event)
	// Owned by the test: it ends when the response does (ctx cancelled, or
	// the server's end), and the test waits for out to close.
	go func() {
		defer close(out)
		defer resp.Body.Close()
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			data, ok := strings.CutPrefix(scanner.Text(), "data: ")
			var ev dashboard.Event
			if ok && json.Unmarshal([]byte(data), &ev) == nil && ev.Type != "" {
				out <- ev
			}
		}
	}()
	return out
}

func next(t *testing.T, events <-chan dashboard.Event) dashboard.Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		require.True(t, ok, "the stream ended")
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10s")
		return dashboard.Event{}
	}
}

func TestEventsStream(t *testing.T) {
	source := clusterregistry.NewMemorySource(clusterregistrytest.NewCluster("prod"))
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Fail("broken", errors.New("server version: connection refused"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	clusterregistrytest.Sync(t, syncer)
	returned := make(chan struct{})
	h := dashboard.New(syncer)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Path == "/api/events" {
			close(returned)
		}
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gen := syncer.Registry().Snapshot().Generation()
	events := streamEvents(t, ctx, srv.URL)
	ev := next(t, events)
	assert.Equal(t, dashboard.Event{Type: "Added", Cluster: "prod", Generation: gen, Replay: true, Time: ev.Time}, ev)

	// A change of the source arrives on the stream, with its error.
	source.Upsert(clusterregistrytest.NewCluster("broken"))
	ev = next(t, events)
	assert.Equal(t, "Failed", ev.Type)
	assert.Equal(t, "broken", ev.Cluster)
	assert.Greater(t, ev.Generation, gen)
	assert.Contains(t, ev.Error, "connection refused")
	assert.False(t, ev.Replay)

	// The client goes away: the handler returns, and the reader ends.
	cancel()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the events handler did not return after its client went away")
	}
	for range events {
	}
}

func TestEventsStreamEndsWithTheSyncer(t *testing.T) {
	source := clusterregistry.NewMemorySource(clusterregistrytest.NewCluster("prod"))
	syncer, err := clusterregistry.NewSyncer(source, clusterregistrytest.NewFakeBuilder())
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- syncer.Run(runCtx) }() // joined below
	require.NoError(t, syncer.WaitForFirstSync(context.Background()))
	srv := httptest.NewServer(dashboard.New(syncer))
	t.Cleanup(srv.Close)

	events := streamEvents(t, context.Background(), srv.URL)
	assert.Equal(t, "Added", next(t, events).Type)
	stop()
	require.NoError(t, <-runDone)
	assert.Equal(t, "Removed", next(t, events).Type, "the last events, then the end")
	for range events {
	}
}
