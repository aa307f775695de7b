package httpcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

func TestMain(m *testing.M) { clusterregistrytest.VerifyTestMain(m) }

type fake = *clusterregistrytest.FakeClient

// echo answers with the name of the cluster it was given and its client's.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	name, ok := httpcluster.ClusterName(r.Context())
	if !ok {
		http.Error(w, "no cluster name", http.StatusInternalServerError)
		return
	}
	client, ok := httpcluster.Client[fake](r.Context())
	if !ok {
		http.Error(w, "no client", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%s %s", name, client.Name())
})

// newSyncer returns a synced Syncer over source with a FakeBuilder whose
// builds of "broken" fail. It does not Run, so only the test syncs.
func newSyncer(t *testing.T, source clusterregistry.ClusterSource, opts ...clusterregistry.Option) (*clusterregistry.Syncer[fake], *clusterregistrytest.FakeBuilder) {
	t.Helper()
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Fail("broken", errors.New("server version: dial tcp 10.0.0.9:6443: connection refused"))
	syncer, err := clusterregistry.NewSyncer(source, builder, opts...)
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)
	return syncer, builder
}

type errorJSON struct {
	Status  int    `json:"status"`
	Cluster string `json:"cluster"`
	Error   string `json:"error"`
}

func TestMiddlewareStatus(t *testing.T) {
	withDefault := clusterregistrytest.NewSource(
		clusterregistrytest.NewDefaultCluster("prod"),
		clusterregistrytest.NewCluster("staging"),
		clusterregistrytest.NewCluster("broken"),
	)
	noDefault := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("staging"))
	brokenDefault := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("broken"))
	twoDefaults := clusterregistrytest.NewSource(
		clusterregistrytest.NewDefaultCluster("a"), clusterregistrytest.NewDefaultCluster("b"))

	tests := []struct {
		name        string
		giveSource  clusterregistry.ClusterSource
		giveOpts    []httpcluster.Option
		giveTarget  string
		giveHeader  string
		wantStatus  int
		wantBody    string // for 200
		wantCluster string // for errors
		wantError   string // for errors, a substring
	}{
		{name: "header", giveSource: withDefault, giveTarget: "/", giveHeader: "staging",
			wantStatus: 200, wantBody: "staging staging"},
		{name: "query", giveSource: withDefault, giveTarget: "/?cluster=staging",
			wantStatus: 200, wantBody: "staging staging"},
		{name: "header before query", giveSource: withDefault, giveTarget: "/?cluster=prod", giveHeader: "staging",
			wantStatus: 200, wantBody: "staging staging"},
		{name: "default", giveSource: withDefault, giveTarget: "/",
			wantStatus: 200, wantBody: "prod prod"},
		{name: "empty query means default", giveSource: withDefault, giveTarget: "/?cluster=",
			wantStatus: 200, wantBody: "prod prod"},
		{name: "unknown", giveSource: withDefault, giveTarget: "/?cluster=dev",
			wantStatus: 404, wantCluster: "dev", wantError: `cluster "dev": cluster not found`},
		{name: "failing", giveSource: withDefault, giveTarget: "/", giveHeader: "broken",
			wantStatus: 503, wantCluster: "broken", wantError: "connection refused"},
		{name: "no default", giveSource: noDefault, giveTarget: "/",
			wantStatus: 503, wantError: "no default cluster"},
		{name: "failing default", giveSource: brokenDefault, giveTarget: "/",
			wantStatus: 503, wantCluster: "broken", wantError: "connection refused"},
		{name: "ambiguous default", giveSource: twoDefaults, giveTarget: "/",
			wantStatus: 503, wantError: `clusters ["a" "b"] are all marked default`},
		{name: "custom header", giveSource: withDefault, giveOpts: []httpcluster.Option{httpcluster.WithHeader("X-Env")},
			giveTarget: "/", giveHeader: "staging", wantStatus: 200, wantBody: "staging staging"},
		{name: "custom query", giveSource: withDefault, giveOpts: []httpcluster.Option{httpcluster.WithQueryParam("ctx")},
			giveTarget: "/?ctx=staging&cluster=dev", wantStatus: 200, wantBody: "staging staging"},
		{name: "query off", giveSource: withDefault, giveOpts: []httpcluster.Option{httpcluster.WithQueryParam("")},
			giveTarget: "/?cluster=staging", wantStatus: 200, wantBody: "prod prod"},
		{name: "header off", giveSource: withDefault, giveOpts: []httpcluster.Option{httpcluster.WithHeader("")},
			giveTarget: "/?cluster=staging", giveHeader: "broken", wantStatus: 200, wantBody: "staging staging"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			syncer, _ := newSyncer(t, tt.giveSource)
			h := httpcluster.New(syncer.Registry(), tt.giveOpts...).Handler(echo)
			req := httptest.NewRequest(http.MethodGet, tt.giveTarget, nil)
			req.Header.Set("X-Cluster-Name", tt.giveHeader)
			req.Header.Set("X-Env", tt.giveHeader)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			assert.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			if tt.wantStatus == http.StatusOK {
				assert.Equal(t, tt.wantBody, rec.Body.String())
				return
			}
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body errorJSON
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, tt.wantStatus, body.Status)
			assert.Equal(t, tt.wantCluster, body.Cluster)
			assert.Contains(t, body.Error, tt.wantError)
			assert.NotContains(t, rec.Body.String(), "token-", "no credential in an error body")
		})
	}
}

func TestMiddlewarePathValue(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"), clusterregistrytest.NewCluster("staging"))
	syncer, _ := newSyncer(t, source)
	mw := httpcluster.New(syncer.Registry(), httpcluster.WithPathValue("cluster"))
	mux := http.NewServeMux()
	mux.Handle("GET /clusters/{cluster}/echo", mw.Handler(echo))
	mux.Handle("GET /echo", mw.Handler(echo))

	for target, want := range map[string]string{
		"/clusters/staging/echo":              "staging staging",
		"/clusters/staging/echo?cluster=prod": "staging staging",
		"/echo?cluster=staging":               "staging staging",
		"/echo":                               "prod prod",
		"/clusters/dev/echo?cluster=staging":  `{"status":404,"cluster":"dev","error":"cluster \"dev\": cluster not found"}` + "\n",
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		assert.Equal(t, want, rec.Body.String(), target)
	}
}

func TestMiddlewareVary(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"))
	syncer, _ := newSyncer(t, source)
	for _, tt := range []struct {
		give []httpcluster.Option
		want []string
	}{
		{nil, []string{"X-Cluster-Name"}},
		{[]httpcluster.Option{httpcluster.WithHeader("X-Env")}, []string{"X-Env"}},
		{[]httpcluster.Option{httpcluster.WithHeader("")}, nil},
	} {
		for _, target := range []string{"/", "/?cluster=dev"} {
			rec := httptest.NewRecorder()
			httpcluster.New(syncer.Registry(), tt.give...).Handler(echo).
				ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
			assert.Equal(t, tt.want, rec.Header().Values("Vary"), target)
		}
	}
}

func TestMiddlewareStoppedSyncer(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"))
	syncer, _ := newSyncer(t, source)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, syncer.Run(ctx)) // syncs nothing, then stops and empties the Registry

	h := httpcluster.New(syncer.Registry()).Handler(echo)
	for _, target := range []string{"/", "/?cluster=prod"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, target)
		assert.Contains(t, rec.Body.String(), "syncer stopped", target)
	}
}

func TestMiddlewareErrorHandler(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("broken"))
	syncer, _ := newSyncer(t, source)
	var got *httpcluster.Error
	h := httpcluster.New(syncer.Registry(), httpcluster.WithErrorHandler(
		func(w http.ResponseWriter, r *http.Request, err *httpcluster.Error) {
			got = err
			http.Error(w, "cluster unavailable", err.Status)
		})).Handler(echo)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?cluster=broken", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "cluster unavailable\n", rec.Body.String())
	require.NotNil(t, got)
	assert.Equal(t, "broken", got.Cluster)
	var ce *clusterregistry.ClusterError
	assert.ErrorAs(t, got, &ce)
	assert.Equal(t, `503 Service Unavailable: cluster "broken": server version: dial tcp 10.0.0.9:6443: connection refused`, got.Error())
}

func TestClientOutsideMiddleware(t *testing.T) {
	_, ok := httpcluster.Client[fake](context.Background())
	assert.False(t, ok)
	_, ok = httpcluster.ClusterName(context.Background())
	assert.False(t, ok)

	ctx := httpcluster.NewContext(context.Background(), "prod", "a string client")
	_, ok = httpcluster.Client[fake](ctx)
	assert.False(t, ok, "a client of another type is not returned")
	s, ok := httpcluster.Client[string](ctx)
	assert.True(t, ok)
	assert.Equal(t, "a string client", s)
}

// blockingHandler holds each request until release is closed, and records
// whether its client had been released at its start and at its end.
type blockingHandler struct {
	entered     chan fake
	release     chan struct{}
	sawReleased atomic.Bool
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client, _ := httpcluster.Client[fake](r.Context())
	h.entered <- client
	<-h.release
	if client.Released() {
		h.sawReleased.Store(true)
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestLeaseHeldForTheRequest(t *testing.T) {
	tests := []struct {
		name   string
		change func(*clusterregistrytest.Source)
	}{
		{"replaced", func(s *clusterregistrytest.Source) {
			s.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewDefaultCluster("prod"), "rotated"))
		}},
		{"removed", func(s *clusterregistrytest.Source) { s.Delete("prod") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fake clock that never moves: the drain timeout cannot end the
			// lease early, only the request can.
			clock := clocktesting.NewFakeClock(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC))
			source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"))
			syncer, _ := newSyncer(t, source, clusterregistry.WithClock(clock))
			h := &blockingHandler{entered: make(chan fake, 1), release: make(chan struct{})}
			mw := httpcluster.New(syncer.Registry()).Handler(h)

			served := make(chan struct{})
			go func() {
				defer close(served)
				mw.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
			}()
			old := <-h.entered

			tt.change(source)
			rep := clusterregistrytest.Sync(t, syncer)
			require.True(t, rep.Published)
			current, _ := syncer.Registry().Get("prod")
			assert.NotSame(t, old, current, "the registry serves the new state at once")
			assert.False(t, old.Released(), "released while a request holds it")

			close(h.release)
			<-served
			assert.False(t, h.sawReleased.Load())
			assert.True(t, old.Released(), "released once the request has ended")
		})
	}
}

func TestLeaseReleasedWhenHandlerPanics(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"))
	syncer, builder := newSyncer(t, source)
	h := httpcluster.New(syncer.Registry()).Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	assert.Panics(t, func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) })

	source.Delete("prod")
	clusterregistrytest.Sync(t, syncer)
	assert.True(t, builder.Built()[0].Released(), "the lease was returned by the panicking request")
}

// TestConcurrentRequestsDuringSyncs runs requests over real HTTP while the
// clusters are rotated, removed and re-added without pause. Run it with
// -race. No request may see its client released, and every client must be
// released exactly once in the end.
func TestConcurrentRequestsDuringSyncs(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("a", pod("shop", "web-1"))
	builder.Seed("b", pod("shop", "web-1"), pod("shop", "web-2"))
	t.Cleanup(func() { builder.CheckReleased(t) }) // after the Syncer has stopped
	source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("a"), clusterregistrytest.NewCluster("b"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)

	var sawReleased, ok, unavailable atomic.Int64
	handler := httpcluster.New(syncer.Registry()).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, _ := httpcluster.Client[fake](r.Context())
		if client.Released() {
			sawReleased.Add(1)
		}
		pods, err := client.Kubernetes().CoreV1().Pods("shop").List(r.Context(), metav1.ListOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if client.Released() {
			sawReleased.Add(1)
		}
		fmt.Fprint(w, len(pods.Items))
	}))
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 3 {
			case 0:
				source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("b"), fmt.Sprint("t", i)))
			case 1:
				source.Delete("b")
			case 2:
				source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewDefaultCluster("a"), fmt.Sprint("t", i)))
			}
			_, err := syncer.Sync(context.Background())
			assert.NoError(t, err)
		}
	})

	var requests sync.WaitGroup
	for range 8 {
		requests.Go(func() {
			for j := range 50 {
				cluster := []string{"a", "b", ""}[j%3]
				resp, err := srv.Client().Get(srv.URL + "/?cluster=" + cluster)
				if !assert.NoError(t, err) {
					return
				}
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusNotFound: // b between its removal and re-addition
					unavailable.Add(1)
				default:
					t.Errorf("status %d for cluster %q", resp.StatusCode, cluster)
				}
				resp.Body.Close()
			}
		})
	}
	requests.Wait()
	close(stop)
	churn.Wait()

	assert.Zero(t, sawReleased.Load(), "a request saw its client released")
	assert.Positive(t, ok.Load())
	t.Logf("%d requests served, %d found no cluster, %d clients built", ok.Load(), unavailable.Load(), len(builder.Built()))
	assert.Greater(t, len(builder.Built()), 10, "the clusters were rebuilt during the requests")
	srv.Client().CloseIdleConnections()
}

func TestErrorBodyNeverHoldsCredentials(t *testing.T) {
	const secret = "s3cr3t-bearer-token"
	broken := clusterregistrytest.WithToken(clusterregistrytest.NewDefaultCluster("broken"), secret)
	broken.Config.Password = "hunter2"
	source := clusterregistrytest.NewSource(broken)
	syncer, _ := newSyncer(t, source)
	mw := httpcluster.New(syncer.Registry())

	for _, target := range []string{"/", "/?cluster=broken", "/?cluster=" + secret} {
		rec := httptest.NewRecorder()
		mw.Handler(echo).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		body := rec.Body.String()
		if target != "/?cluster="+secret { // the caller's own input is echoed as the cluster name
			assert.NotContains(t, body, secret)
		}
		assert.NotContains(t, body, "hunter2")
	}
	rec := httptest.NewRecorder()
	httpcluster.ListHandler(syncer.Registry()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.NotContains(t, rec.Body.String(), secret)
	assert.NotContains(t, rec.Body.String(), "hunter2")
	assert.True(t, strings.Contains(rec.Body.String(), "connection refused"), rec.Body.String())
}
