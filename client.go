package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// Client is the ready per-cluster client bundle: a typed clientset, a dynamic
// client and a discovery client, all sharing one *http.Client (so one
// connection pool per cluster), with the server version seen when it was
// built. ClientBuilder builds it.
//
// Everything heavy is made on first use: the transport (its TLS
// configuration and connection pool, made when the first request goes out),
// the typed clientset, the dynamic and the discovery client. An idle cluster
// holds little more than its config and version. Nothing of it panics: when
// client-go cannot make the transport (a token, CA, certificate or key file
// missing for a moment), requests fail with an error that names the cluster
// and the field, and the next request tries again. A Client is safe for
// concurrent use.
type Client struct {
	name    string
	config  *rest.Config
	version version.Info

	transport  *lazyTransport
	httpClient *http.Client // its Transport is transport

	mu        sync.Mutex // serializes making the clients below; readers load them without it
	kube      atomic.Pointer[kubernetes.Clientset]
	dynamic   atomic.Pointer[dynamic.DynamicClient]
	discovery atomic.Pointer[discovery.DiscoveryClient]
}

// Name returns the name of the cluster the client was built for.
func (c *Client) Name() string { return c.name }

// Config returns a copy of the config the client was built from.
func (c *Client) Config() *rest.Config { return restconfig.Copy(c.config) }

// HTTPClient returns the *http.Client that all of the bundle's clients share.
// It carries the cluster's authentication; its transport is made when its
// first request goes out.
func (c *Client) HTTPClient() *http.Client { return c.httpClient }

// ServerVersion returns the version the API server reported when the client
// was built; the zero Info when ClientBuilder.SkipVersionCheck skipped it.
func (c *Client) ServerVersion() version.Info { return c.version }

// Kubernetes returns the typed clientset, making it on first use.
func (c *Client) Kubernetes() kubernetes.Interface {
	cs, err := part(&c.mu, &c.kube, func() (*kubernetes.Clientset, error) {
		return kubernetes.NewForConfigAndClient(c.config, c.httpClient)
	})
	if err != nil {
		return kubernetes.New(c.failing(err))
	}
	return cs
}

// Dynamic returns the dynamic client, making it on first use.
func (c *Client) Dynamic() dynamic.Interface {
	dyn, err := part(&c.mu, &c.dynamic, func() (*dynamic.DynamicClient, error) {
		return dynamic.NewForConfigAndClient(c.config, c.httpClient)
	})
	if err != nil {
		return dynamic.New(c.failing(err))
	}
	return dyn
}

// Discovery returns the discovery client, making it on first use. It does
// not cache: wrap it in k8s.io/client-go/discovery/cached/memory for that.
func (c *Client) Discovery() discovery.DiscoveryInterface {
	dc, err := c.discoveryClient()
	if err != nil {
		return discovery.NewDiscoveryClient(c.failing(err))
	}
	return dc
}

func (c *Client) discoveryClient() (*discovery.DiscoveryClient, error) {
	return part(&c.mu, &c.discovery, func() (*discovery.DiscoveryClient, error) {
		return discovery.NewDiscoveryClientForConfigAndClient(c.config, c.httpClient)
	})
}

// part returns what p holds, making it first under mu. What cannot be made is
// not kept, so the next call tries again.
//
// The clients are made from the client's own copy of its config, whose host
// and rate limits Build checked with the same functions, and over an
// *http.Client that always exists: they do not fail. Should one ever fail,
// the caller gets clients whose requests fail instead of a panic.
func part[T any](mu *sync.Mutex, p *atomic.Pointer[T], newPart func() (*T, error)) (*T, error) {
	if v := p.Load(); v != nil {
		return v, nil
	}
	// Held while client-go makes the client (no I/O), so that callers who
	// race to the first use share one.
	mu.Lock()
	defer mu.Unlock()
	if v := p.Load(); v != nil {
		return v, nil
	}
	v, err := newPart()
	if err != nil {
		return nil, err
	}
	p.Store(v)
	return v, nil
}

// failing returns a REST client whose every request fails with err.
func (c *Client) failing(err error) *rest.RESTClient {
	err = fmt.Errorf("cluster %q: %w", c.name, err)
	content := rest.ClientContentConfig{
		ContentType: "application/json",
		Negotiator:  runtime.NewClientNegotiator(scheme.Codecs.WithoutConversion(), schema.GroupVersion{}),
	}
	// NewRESTClient has no error to return; the host is never dialled.
	rc, _ := rest.NewRESTClient(&url.URL{Scheme: "https", Host: "unusable.invalid"}, "", content, nil,
		&http.Client{Transport: failingTransport{err}})
	return rc
}

type failingTransport struct{ err error }

func (t failingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return nil, t.err
}

// ClientBuilder builds the ready bundle *Client. Its zero value is ready to
// use. Building checks the config and asks the API server for its version
// (GET /version) under the build deadline, so an unreachable or black-holed
// cluster fails its build and keeps its last good client. The check's
// connection is closed when the check ends and leaves nothing behind; the
// client's own transport is made on first use.
type ClientBuilder struct {
	// UserAgent, when set, is used for configs that name none.
	UserAgent string
	// QPS and Burst, when set, are used for configs that set neither QPS nor
	// a RateLimiter. client-go's own defaults (5 and 10) are low for a
	// service that serves many users.
	QPS   float32
	Burst int
	// SkipVersionCheck builds without asking the API server anything: a
	// build costs no connection and no TLS handshake, so a cold start of
	// thousands of clusters takes milliseconds instead of seconds. The price:
	// an unreachable cluster, or one that refuses the credentials, is
	// published and fails at its first request (and at its first probe, with
	// WithHealthCheck) instead of failing its build and keeping its last good
	// client; and ServerVersion returns the zero Info.
	SkipVersionCheck bool
	// RequestTimeout bounds each request of a client whose config sets no
	// Timeout, from its start until its response body is closed: client-go
	// sets none by default, so a request to an API server that accepts the
	// connection and never answers would wait forever. Zero keeps the
	// default, 30s; a negative value sets no bound. Watches (watch=true, or
	// a /watch/ path), followed logs (follow=true) and upgraded connections
	// are never bounded by it, and a request whose context ends sooner ends
	// then. A config's own Timeout applies as client-go applies it, to every
	// request, watches included.
	RequestTimeout time.Duration
	// Observer, when set, hears every request of the clients built, with
	// the cluster's name, verb, resource, status code and latency
	// (RequestObserver). Pass the Observer of WithObserver here too when it
	// is one: the examples module's metrics.Metrics is both.
	Observer RequestObserver
}

// defaultRequestTimeout is ClientBuilder.RequestTimeout's default.
const defaultRequestTimeout = 30 * time.Second

// requestTimeout returns the bound of requests for cfg: zero for none.
func (b ClientBuilder) requestTimeout(cfg *rest.Config) time.Duration {
	switch {
	case cfg.Timeout != 0, b.RequestTimeout < 0:
		return 0
	case b.RequestTimeout == 0:
		return defaultRequestTimeout
	}
	return b.RequestTimeout
}

var _ Builder[*Client] = ClientBuilder{}

// Build makes a *Client for c, as the type's documentation says.
func (b ClientBuilder) Build(ctx context.Context, c Cluster) (*Client, error) {
	cfg := c.Config
	if cfg.UserAgent == "" && b.UserAgent != "" {
		cfg.UserAgent = b.UserAgent
	}
	if cfg.QPS == 0 && cfg.RateLimiter == nil && b.QPS != 0 {
		cfg.QPS, cfg.Burst = b.QPS, b.Burst
	}
	// The clientsets made on first use refuse these; check them now, so that
	// making them cannot fail.
	if cfg.RateLimiter == nil && cfg.QPS > 0 && cfg.Burst <= 0 {
		return nil, &FieldError{Field: "config.burst", Err: errors.New("must be positive when qps is set")}
	}
	if _, _, err := rest.DefaultServerUrlFor(cfg); err != nil {
		return nil, &FieldError{Field: "config.host", Err: err}
	}

	client := newClient(c.Name, cfg)
	client.transport.timeout = b.requestTimeout(cfg)
	client.transport.observer = b.Observer
	if b.SkipVersionCheck {
		return client, nil
	}
	v, err := checkVersion(ctx, cfg)
	if err != nil {
		return nil, err
	}
	client.version = *v
	return client, nil
}

func newClient(name string, cfg *rest.Config) *Client {
	t := &lazyTransport{name: name, config: cfg}
	// client-go's rest.HTTPClientFor puts the config's timeout on the
	// *http.Client rather than in its transport.
	return &Client{name: name, config: cfg, transport: t, httpClient: &http.Client{Transport: t, Timeout: cfg.Timeout}}
}

// checkVersion asks the API server for its version over a transport of its
// own, which speaks HTTP/1.1 and keeps no connection alive: the connection
// closes with the response and nothing refers to it. Over HTTP/2, client-go's
// health-check timer keeps a closed connection and its buffers (about 27 KB)
// reachable for 30s; over HTTP/1.1 with keep-alive, the idle timer keeps it
// for 90s even after CloseIdleConnections.
func checkVersion(ctx context.Context, cfg *rest.Config) (*version.Info, error) {
	tcfg := restconfig.Copy(cfg)
	tcfg.NextProtos = []string{"http/1.1"}
	if tcfg.Transport == nil {
		// client-go makes the *http.Transport; a caller's own is not ours
		// to change.
		tcfg.WrapTransport = transport.Wrappers(disableKeepAlives, tcfg.WrapTransport)
	}
	hc, err := newHTTPClient(tcfg)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	// Should a wrapper of the caller's have hidden the *http.Transport.
	defer utilnet.CloseIdleConnectionsFor(hc.Transport)
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	v, err := dc.ServerVersionWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	return v, nil
}

// disableKeepAlives is a client-go transport wrapper for a transport that
// nobody has used yet, so setting the field races with nothing.
func disableKeepAlives(rt http.RoundTripper) http.RoundTripper {
	if t, ok := rt.(*http.Transport); ok {
		t.DisableKeepAlives = true
	}
	return rt
}

// newHTTPClient makes a transport of the client's own. The error names the
// field that client-go could not use.
func newHTTPClient(cfg *rest.Config) (*http.Client, error) {
	// One transport per client rather than client-go's shared cache, which
	// hands one transport to every config with the same TLS settings: the
	// same cluster after a token rotation, or clusters without a CA of their
	// own. Release can then close exactly this client's connections. Setting
	// Proxy (to what client-go uses anyway) is what keeps it out of the cache.
	tcfg := restconfig.Copy(cfg)
	if tcfg.Proxy == nil {
		tcfg.Proxy = http.ProxyFromEnvironment
	}
	hc, err := rest.HTTPClientFor(tcfg)
	if err != nil {
		return nil, &FieldError{Field: transportField(cfg, err), Err: err}
	}
	return hc, nil
}

// transportField guesses which field of cfg client-go failed on: the file
// its error names, or the inline data it could not parse.
func transportField(cfg *rest.Config, err error) string {
	msg := err.Error()
	for _, f := range []struct{ field, path string }{
		{"config.bearerTokenFile", cfg.BearerTokenFile},
		{"config.caFile", cfg.CAFile},
		{"config.certFile", cfg.CertFile},
		{"config.keyFile", cfg.KeyFile},
	} {
		if f.path != "" && strings.Contains(msg, f.path) {
			return f.field
		}
	}
	if len(cfg.CAData) > 0 && strings.Contains(msg, "root certificates") {
		return "config.caData"
	}
	return "config"
}

// Release stops the client's connections, which belong to it alone: the idle
// ones at once, and each busy one as soon as its last request ends (its
// response body is closed). A request made after Release still works, on a
// connection that closes when it ends.
func (ClientBuilder) Release(c *Client) { c.transport.release() }

// lazyTransport is a Client's http.RoundTripper. It makes client-go's
// transport for the first request, and again for the next request after
// client-go could not. It counts the requests in flight, so that once the
// client is released the last one to end closes the connections.
type lazyTransport struct {
	name     string
	config   *rest.Config
	timeout  time.Duration   // bound of each request that is not a stream; 0 for none
	observer RequestObserver // nil for none
	breaker  breaker         // armed by a Syncer, unless WithoutFailFast

	mu     sync.Mutex                  // serializes making client; readers load it without it
	client atomic.Pointer[http.Client] // client-go's, nil until made

	inFlight atomic.Int64 // requests sent and not yet ended
	released atomic.Bool
}

// get returns client-go's transport, making it if need be.
func (t *lazyTransport) get() (http.RoundTripper, error) {
	if hc := t.client.Load(); hc != nil {
		return hc.Transport, nil
	}
	// Held while client-go makes the transport, which reads local files at
	// most (token, CA, certificate, key) and dials nothing: callers who race
	// to the first request share one transport and its connections.
	t.mu.Lock()
	defer t.mu.Unlock()
	if hc := t.client.Load(); hc != nil {
		return hc.Transport, nil
	}
	hc, err := newHTTPClient(t.config)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: transport: %w", t.name, err)
	}
	t.client.Store(hc)
	return hc.Transport, nil
}

// RoundTrip sends req on client-go's transport. A request ends when its
// response body is closed, or when it fails.
func (t *lazyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var start time.Time
	if t.observer != nil {
		start = time.Now()
	}
	resp, err := t.roundTrip(req)
	if t.observer != nil {
		t.observe(req, start, resp, err)
	}
	return resp, err
}

func (t *lazyTransport) roundTrip(req *http.Request) (*http.Response, error) {
	rt, err := t.get()
	if err == nil {
		err = t.breaker.allow(req)
	}
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	cancel := noCancel
	if t.timeout > 0 && !streaming(req) {
		var ctx context.Context
		ctx, cancel = context.WithTimeout(req.Context(), t.timeout)
		req = req.WithContext(ctx)
	}
	t.inFlight.Add(1)
	resp, err := rt.RoundTrip(req)
	t.breaker.record(t.name, req, resp, err)
	if err != nil {
		cancel()
		t.ended()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection is the caller's now, out of the pool: keep the
		// body's io.Writer and count the request as ended. Upgrades are
		// streams: no timeout was set.
		cancel()
		t.ended()
		return resp, nil
	}
	resp.Body = &endingBody{ReadCloser: resp.Body, t: t, cancel: cancel}
	return resp, nil
}

// observe tells the observer about a request. No lock is held: the
// observer is the caller's code.
func (t *lazyTransport) observe(req *http.Request, start time.Time, resp *http.Response, err error) {
	info := requestInfo(req)
	info.Latency = time.Since(start)
	if resp != nil {
		info.Code = resp.StatusCode
	}
	info.Err = err
	t.observer.RequestDone(t.name, info)
}

// streaming reports whether req opens a stream that may rightly last longer
// than any request timeout: a watch, a followed log, an upgrade.
func streaming(req *http.Request) bool {
	if req.Header.Get("Upgrade") != "" || strings.Contains(req.URL.Path, "/watch/") {
		return true
	}
	if watchQuery(req) {
		return true
	}
	if !strings.Contains(req.URL.RawQuery, "follow=") {
		return false // the common case, without parsing the query
	}
	on, err := strconv.ParseBool(req.URL.Query().Get("follow"))
	return err == nil && on
}

// ended counts a request out. Release and the last request to end both
// check the other's mark after setting their own, so one of them closes.
func (t *lazyTransport) ended() {
	if t.inFlight.Add(-1) == 0 && t.released.Load() {
		t.closeReleased()
	}
}

func (t *lazyTransport) release() {
	t.released.Store(true)
	if t.inFlight.Load() == 0 {
		t.closeReleased()
	}
}

// releasedRecloses are the moments after the last request of a released
// client ends at which its idle connections are closed again.
var releasedRecloses = []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second}

// closeReleased closes the idle connections of a released client now, and
// again a moment later. HTTP/2's Body.Close returns before the stream has
// left its connection when the request's context has already ended (as a
// watch stopped after its worker's context), and a connection with a stream
// is not idle: closed only once, it would stay open until the transport's
// idle timeout (90s). The later passes are timers, not goroutines, and touch
// only this client's own transport.
func (t *lazyTransport) closeReleased() {
	t.closeIdle()
	for _, d := range releasedRecloses {
		time.AfterFunc(d, t.closeIdle)
	}
}

func (t *lazyTransport) closeIdle() {
	if hc := t.client.Load(); hc != nil {
		utilnet.CloseIdleConnectionsFor(hc.Transport)
	}
}

// CloseIdleConnections closes client-go's transport's idle connections, for
// callers that close them through the *http.Client.
func (t *lazyTransport) CloseIdleConnections() { t.closeIdle() }

// endingBody is a response body that ends its request once, when closed.
// Both HTTP/1.1 and HTTP/2 give the connection back to the pool before Close
// returns, so closing idle connections right after finds it.
type endingBody struct {
	io.ReadCloser
	t      *lazyTransport
	cancel context.CancelFunc // ends the request's timeout, if any
	once   sync.Once
}

func (b *endingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.end)
	return err
}

func (b *endingBody) end() {
	b.cancel()
	b.t.ended()
}

func noCancel() {}
