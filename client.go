package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// Client is the ready per-cluster client bundle: a typed clientset, a dynamic
// client and a discovery client, all sharing one *http.Client (so one
// connection pool per cluster), with the server version seen when it was
// built. ClientBuilder builds it.
//
// Everything heavy is made on first use: the *http.Client (its transport,
// TLS configuration and connection pool), the typed clientset and the
// dynamic client. An idle cluster holds little more than its config and
// version. A Client is safe for concurrent use.
type Client struct {
	name    string
	config  *rest.Config
	version version.Info

	parts      func() *clientParts // made on first use
	kubernetes func() *kubernetes.Clientset
	dynamic    func() *dynamic.DynamicClient

	mu   sync.Mutex   // protects made
	made *clientParts // nil until parts has run; read by Release
}

// clientParts are the parts every request needs.
type clientParts struct {
	httpClient *http.Client
	discovery  *discovery.DiscoveryClient
}

// Name returns the name of the cluster the client was built for.
func (c *Client) Name() string { return c.name }

// Config returns a copy of the config the client was built from.
func (c *Client) Config() *rest.Config { return restconfig.Copy(c.config) }

// HTTPClient returns the *http.Client that all of the bundle's clients share,
// making it on first use. It carries the cluster's authentication.
func (c *Client) HTTPClient() *http.Client { return c.parts().httpClient }

// ServerVersion returns the version the API server reported when the client
// was built.
func (c *Client) ServerVersion() version.Info { return c.version }

// Kubernetes returns the typed clientset, making it on first use.
func (c *Client) Kubernetes() kubernetes.Interface { return c.kubernetes() }

// Dynamic returns the dynamic client, making it on first use.
func (c *Client) Dynamic() dynamic.Interface { return c.dynamic() }

// Discovery returns the discovery client. It does not cache: wrap it in
// k8s.io/client-go/discovery/cached/memory for that.
func (c *Client) Discovery() discovery.DiscoveryInterface { return c.parts().discovery }

// ClientBuilder builds the ready bundle *Client. Its zero value is ready to
// use. Building checks the config and asks the API server for its version
// (GET /version) under the build deadline, so an unreachable or black-holed
// cluster fails its build and keeps its last good client; the connection of
// that check is closed, and the client's own transport is made on first use.
type ClientBuilder struct {
	// UserAgent, when set, is used for configs that name none.
	UserAgent string
	// QPS and Burst, when set, are used for configs that set neither QPS nor
	// a RateLimiter. client-go's own defaults (5 and 10) are low for a
	// service that serves many users.
	QPS   float32
	Burst int
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
	// kubernetes.NewForConfigAndClient refuses this combination; check it now
	// so that the clientset made on first use cannot fail.
	if cfg.RateLimiter == nil && cfg.QPS > 0 && cfg.Burst <= 0 {
		return nil, &FieldError{Field: "config.burst", Err: errors.New("must be positive when qps is set")}
	}

	check, err := newParts(cfg)
	if err != nil {
		return nil, err
	}
	v, err := check.discovery.ServerVersionWithContext(ctx)
	// The check's transport is this call's alone: close its connections.
	utilnet.CloseIdleConnectionsFor(check.httpClient.Transport)
	if err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}

	client := &Client{name: c.Name, config: cfg, version: *v}
	client.parts = sync.OnceValue(func() *clientParts {
		p, err := newParts(cfg)
		if err != nil {
			// Unreachable: the same config built the check's parts.
			panic(fmt.Sprintf("clusterregistry: transport for cluster %q: %v", c.Name, err))
		}
		client.mu.Lock()
		client.made = p
		client.mu.Unlock()
		return p
	})
	client.kubernetes = sync.OnceValue(func() *kubernetes.Clientset {
		cs, err := kubernetes.NewForConfigAndClient(cfg, client.parts().httpClient)
		if err != nil {
			// Unreachable: the same config and client built the discovery
			// client, and the rate-limit settings were checked above.
			panic(fmt.Sprintf("clusterregistry: typed clientset for cluster %q: %v", c.Name, err))
		}
		return cs
	})
	client.dynamic = sync.OnceValue(func() *dynamic.DynamicClient {
		dyn, err := dynamic.NewForConfigAndClient(cfg, client.parts().httpClient)
		if err != nil {
			panic(fmt.Sprintf("clusterregistry: dynamic client for cluster %q: %v", c.Name, err))
		}
		return dyn
	})
	return client, nil
}

// newParts makes a transport of the client's own and a discovery client on it.
func newParts(cfg *rest.Config) (*clientParts, error) {
	// One transport per client rather than client-go's shared cache, which
	// hands one transport to every config with the same TLS settings: the
	// same cluster after a token rotation, or clusters without a CA of their
	// own. Release can then close exactly this client's connections. Setting
	// Proxy (to what client-go uses anyway) is what keeps it out of the cache.
	tcfg := restconfig.Copy(cfg)
	if tcfg.Proxy == nil {
		tcfg.Proxy = http.ProxyFromEnvironment
	}
	httpClient, err := rest.HTTPClientFor(tcfg)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return &clientParts{httpClient: httpClient, discovery: dc}, nil
}

// Release closes the client's idle connections, which belong to it alone.
// Requests still in flight finish on their own.
func (ClientBuilder) Release(c *Client) {
	c.mu.Lock()
	p := c.made
	c.mu.Unlock()
	if p != nil {
		utilnet.CloseIdleConnectionsFor(p.httpClient.Transport)
	}
}
