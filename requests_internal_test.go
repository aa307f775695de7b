package clusterregistry

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/utils/clock"
)

func TestRequestInfoLabelsAreBounded(t *testing.T) {
	long := strings.Repeat("x", 64)
	tests := []struct {
		name string
		give string // "METHOD path?query"
		want RequestInfo
	}{
		{"core list", "GET /api/v1/pods", RequestInfo{Verb: "list", Version: "v1", Resource: "pods"}},
		{"namespaced get", "GET /api/v1/namespaces/shop/pods/web-1", RequestInfo{Verb: "get", Version: "v1", Resource: "pods"}},
		{"subresource", "GET /api/v1/namespaces/shop/pods/web-1/log", RequestInfo{Verb: "get", Version: "v1", Resource: "pods", Subresource: "log"}},
		{"namespace itself", "GET /api/v1/namespaces/shop", RequestInfo{Verb: "get", Version: "v1", Resource: "namespaces"}},
		{"namespace status", "PUT /api/v1/namespaces/shop/status", RequestInfo{Verb: "update", Version: "v1", Resource: "namespaces", Subresource: "status"}},
		{"group", "POST /apis/apps/v1/namespaces/shop/deployments", RequestInfo{Verb: "create", Group: "apps", Version: "v1", Resource: "deployments"}},
		{"watch query", "GET /apis/apps/v1/deployments?watch=true", RequestInfo{Verb: "watch", Group: "apps", Version: "v1", Resource: "deployments"}},
		{"watch path", "GET /api/v1/watch/namespaces/shop/pods", RequestInfo{Verb: "watch", Version: "v1", Resource: "pods"}},
		{"patch", "PATCH /apis/example.com/v1alpha1/widgets/w", RequestInfo{Verb: "patch", Group: "example.com", Version: "v1alpha1", Resource: "widgets"}},
		{"delete", "DELETE /api/v1/namespaces/shop/pods/web-1", RequestInfo{Verb: "delete", Version: "v1", Resource: "pods"}},
		{"deletecollection", "DELETE /api/v1/namespaces/shop/pods", RequestInfo{Verb: "deletecollection", Version: "v1", Resource: "pods"}},
		{"version", "GET /version", RequestInfo{Verb: "get", Resource: "other"}},
		{"readyz", "GET /readyz", RequestInfo{Verb: "get", Resource: "other"}},
		{"discovery", "GET /apis/apps/v1", RequestInfo{Verb: "get", Resource: "other"}},
		{"group only", "GET /apis/apps", RequestInfo{Verb: "get", Resource: "other"}},
		{"too deep", "GET /api/v1/namespaces/a/pods/b/log/extra", RequestInfo{Verb: "get", Resource: "other"}},
		{"not a name", "GET /api/v1/Pods%20x", RequestInfo{Verb: "get", Resource: "other"}},
		{"too long", "GET /api/v1/" + long, RequestInfo{Verb: "get", Resource: "other"}},
		{"odd method", "BREW /api/v1/pods", RequestInfo{Verb: "other", Version: "v1", Resource: "pods"}},
		{"odd method elsewhere", "BREW /coffee", RequestInfo{Verb: "other", Resource: "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, target, _ := strings.Cut(tt.give, " ")
			u, err := url.Parse("https://cluster.test" + target)
			require.NoError(t, err)
			assert.Equal(t, tt.want, requestInfo(&http.Request{Method: method, URL: u, Header: http.Header{}}))
		})
	}
}

func TestStreamingRequests(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"/api/v1/pods", false},
		{"/api/v1/pods?watch=true", true},
		{"/api/v1/pods?watch=1&resourceVersion=5", true},
		{"/api/v1/pods?watch=false", false},
		{"/api/v1/watch/pods", true},
		{"/api/v1/namespaces/a/pods/b/log?follow=true", true},
		{"/api/v1/namespaces/a/pods/b/log?follow=0", false},
		{"/api/v1/pods?labelSelector=watch%3Dtrue", false},
	}
	for _, tt := range tests {
		u, err := url.Parse("https://cluster.test" + tt.give)
		require.NoError(t, err)
		assert.Equal(t, tt.want, streaming(&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}), tt.give)
	}
}

// stubTransport answers every request at once, with no network, so that
// the benchmarks measure the round trippers around it alone.
type stubTransport struct{}

func (stubTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

type countingObserver struct {
	NopObserver
	n int
}

func (o *countingObserver) RequestDone(string, RequestInfo) { o.n++ }

// BenchmarkRoundTripper measures what a Client's transport adds to each
// request against the bare transport it wraps (baseline "bare", in the same
// run): with nothing on, with the request timeout, and with the timeout and
// a RequestObserver, as a service with metrics runs it, and with fail-fast
// armed too, as a Syncer builds it (its breaker closed).
func BenchmarkRoundTripper(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "https://cluster.test/api/v1/namespaces/shop/pods?limit=500", nil)
	require.NoError(b, err)
	ours := func(timeout time.Duration, o RequestObserver) *lazyTransport {
		t := &lazyTransport{name: "prod", timeout: timeout, observer: o}
		t.client.Store(&http.Client{Transport: stubTransport{}})
		return t
	}
	armed := ours(defaultRequestTimeout, &countingObserver{})
	armed.breaker.arm(clock.RealClock{})
	for _, bm := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", stubTransport{}},
		{"ours", ours(0, nil)},
		{"ours+timeout", ours(defaultRequestTimeout, nil)},
		{"ours+timeout+observer", ours(defaultRequestTimeout, &countingObserver{})},
		{"ours+timeout+observer+failfast", armed},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bm.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
			}
		})
	}
}
