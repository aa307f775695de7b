package controllerruntime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/cluster"

	"github.com/clusterregistry/clusterregistry"
)

// Cluster is the client a Builder makes for one cluster: a controller-runtime
// cluster.Cluster (a cache, a client that reads from it, a scheme, a REST
// mapper, its own HTTP client), already started. Its informers start when a
// controller (or anyone) first asks the cache for a kind. The Builder stops it
// on Release; never call Start on it.
//
// Once released, its client's cached reads and its cache's reads and waits
// return an error that wraps ErrReleased at once (or as the release
// happens), rather than wait for a sync that will never come.
type Cluster struct {
	cluster.Cluster
	name   string
	cache  boundCache
	cancel context.CancelFunc
	done   chan struct{} // closed when the cache has stopped and every informer has returned

	conns *connTracker
}

// GetCache returns the cluster's cache; its reads end when the cluster is
// released (see ErrReleased).
func (c *Cluster) GetCache() cache.Cache { return c.cache }

// Name returns the name of the cluster in the Registry.
func (c *Cluster) Name() string { return c.name }

// Builder is a clusterregistry.Builder whose clients are *Cluster: give it to
// clusterregistry.NewSyncer. The zero value is ready to use, with client-go's
// scheme.
//
// Build starts the cluster's cache and checks that the API server answers
// (GET /version) under the build deadline, so that an unreachable cluster
// fails its own build, within the Syncer's build timeout, and blocks no other
// cluster. Release stops the cache, waits for every goroutine the cluster
// started, and closes its idle connections.
type Builder struct {
	// Scheme maps Go types to kinds for every cluster. Default: client-go's
	// scheme.Scheme.
	Scheme *runtime.Scheme
	// Options, if set, edits the cluster.Options of each cluster before it is
	// made (cache options, a client of your own); it gets the cluster's name.
	// It must not replace HTTPClient or Scheme.
	Options func(name string, o *cluster.Options)
	// DiscoveryTimeout bounds each discovery request of the cluster's REST
	// mapper, which runs when a kind is first used: an unreachable cluster
	// then fails that first use rather than block it. Watches and other
	// requests have no such bound; they end when the cluster is released.
	// Default: DefaultDiscoveryTimeout.
	DiscoveryTimeout time.Duration
	// Logger is the cluster's logger (for the cache and its informers), with
	// the cluster's name as a value. Default: none.
	Logger logr.Logger
}

// DefaultDiscoveryTimeout is the Builder's DiscoveryTimeout unless it sets one.
const DefaultDiscoveryTimeout = 10 * time.Second

// Build makes and starts the cluster.Cluster of c. Its error names the
// cluster and never holds a credential.
func (b Builder) Build(ctx context.Context, c clusterregistry.Cluster) (*Cluster, error) {
	if c.Config == nil {
		return nil, fmt.Errorf("cluster %q: no rest.Config", c.Name)
	}
	cfg := rest.CopyConfig(c.Config)
	// One transport per cluster rather than client-go's shared cache, which
	// hands one transport to every config with the same TLS settings (the
	// same cluster after a token rotation): Release can then close exactly
	// this cluster's connections. A config with its own Dial stays out of
	// the cache.
	// As controller-runtime's GetConfig: no client-side rate limit unless the
	// config asks for one; API Priority and Fairness limits on the server.
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS = -1
	}
	tracker := newConnTracker(cfg.Dial)
	cfg.Dial = tracker.dial
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: http client: %w", c.Name, err)
	}
	if err := checkReachable(ctx, cfg, hc); err != nil {
		tracker.release()
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	log := b.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	sch := b.Scheme
	if sch == nil {
		sch = scheme.Scheme
	}
	discoveryTimeout := b.DiscoveryTimeout
	if discoveryTimeout <= 0 {
		discoveryTimeout = DefaultDiscoveryTimeout
	}
	runCtx, cancel := context.WithCancel(context.Background())
	bound := &binding{name: c.Name, run: runCtx}
	cl, err := cluster.New(cfg, func(o *cluster.Options) {
		o.Scheme = sch
		o.Logger = log.WithValues("cluster", c.Name)
		if b.Options != nil {
			b.Options(c.Name, o)
		}
		newClient := o.NewClient
		if newClient == nil {
			newClient = client.New
		}
		o.NewClient = func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			if opts.Cache != nil && opts.Cache.Reader != nil {
				opts.Cache.Reader = boundReader{Reader: opts.Cache.Reader, b: bound}
			}
			return newClient(cfg, opts)
		}
		o.HTTPClient = hc
		o.MapperProvider = func(c *rest.Config, hc *http.Client) (meta.RESTMapper, error) {
			// The same transport (and connections), with a deadline.
			timed := *hc
			timed.Timeout = discoveryTimeout
			return apiutil.NewDynamicRESTMapper(c, &timed)
		}
	})
	if err != nil {
		cancel()
		tracker.release()
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	out := &Cluster{Cluster: cl, name: c.Name, cache: boundCache{Cache: cl.GetCache(), b: bound},
		cancel: cancel, done: make(chan struct{}), conns: tracker}
	// The cluster's cache runs until Release cancels runCtx; Release waits
	// for this goroutine, and Start waits for every informer it started.
	go func() {
		defer close(out.done)
		_ = cl.Start(runCtx) // returns an error only if started twice
	}()
	// Informers that options registered before the start (none by default)
	// sync under the build deadline.
	if !cl.GetCache().WaitForCacheSync(ctx) {
		b.Release(out)
		return nil, fmt.Errorf("cluster %q: cache not synced: %w", c.Name, context.Cause(ctx))
	}
	return out, nil
}

// checkReachable asks the API server its version under ctx: the build's
// proof that the cluster answers and accepts the credential.
func checkReachable(ctx context.Context, cfg *rest.Config, hc *http.Client) error {
	vcfg := rest.CopyConfig(cfg)
	vcfg.GroupVersion = nil
	vcfg.APIPath = ""
	vcfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientForConfigAndClient(vcfg, hc)
	if err != nil {
		return fmt.Errorf("rest client: %w", err)
	}
	if err := rc.Get().AbsPath("/version").Do(ctx).Error(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("GET /version: %w", errors.Join(context.Cause(ctx), err))
		}
		return fmt.Errorf("GET /version: %w", err)
	}
	return nil
}

// Release stops the cluster's cache and informers, waits for them, and
// closes the cluster's idle connections.
func (Builder) Release(c *Cluster) {
	if c == nil {
		return
	}
	c.cancel()
	<-c.done
	c.conns.release()
}

var _ clusterregistry.Builder[*Cluster] = Builder{}
