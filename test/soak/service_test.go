package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/fleet"
	"github.com/clusterregistry/clusterregistry/httpcluster"
	"github.com/clusterregistry/clusterregistry/shard"
	"github.com/clusterregistry/clusterregistry/source/compose"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

type (
	registry = clusterregistry.Registry[*clusterregistry.Client]
	snapshot = clusterregistry.Snapshot[*clusterregistry.Client]
)

// The shard group of the replicas: their Leases live in the hub, in a
// namespace the soak creates. The timings are short, so that a killed
// replica's clusters change hands within seconds (see handoffBound).
const (
	leaseNamespace = "soak-replicas"
	shardGroup     = "soak"
	leaseDuration  = 3 * time.Second
	renewDeadline  = 2 * time.Second
	retryPeriod    = 500 * time.Millisecond
)

// service is one replica of the service under test, as a real one runs the
// library: a shard.Member (its Lease in the hub), a Syncer over the merged
// sources (the kubeconfig directory and the hub's Secrets) filtered by the
// Member, with a Builder gated by it, an HTTP server behind httpcluster's
// middleware, and a worker per cluster (package fleet). Its hub traffic
// (Secrets and Leases) goes through a Proxy of its own in front of the hub's,
// so that a kill can cut this replica alone off. Several run side by side;
// each reports to the shared ledger under its owner name (identity and
// instance: a replica restarted under its identity is another instance).
type service struct {
	id       string // the identity, replica-a
	owner    string // identity#instance, for the ledger
	led      *ledger
	member   *shard.Member
	syncer   *clusterregistry.Syncer[*clusterregistry.Client]
	reg      *registry
	hubProxy *localcluster.Proxy
	hubHTTP  *http.Client
	server   *httptest.Server
	logLines atomic.Int64
	// dead is set when the replica is killed: from then on nothing it does
	// is checked (a killed process does nothing), except that the clients
	// it still holds count as held until it releases them.
	dead atomic.Bool

	cancel    context.CancelFunc
	runErr    chan error
	memberErr chan error
	wg        sync.WaitGroup // the fleet and the subscriber
}

// observer checks every build and sync against the bounds.
type observer struct {
	clusterregistry.NopObserver
	s *service
}

func (o observer) BuildDone(cluster string, d time.Duration, err error) {
	te := time.Now()
	o.s.request("build", cluster, te.Add(-d), te, err)
}

func (o observer) SyncDone(rep clusterregistry.SyncReport, err error) {
	led := o.s.led
	if !o.s.dead.Load() && rep.Duration > syncBound {
		led.violation("slow-sync", "%s: a sync took %s (bound %s); faults meanwhile: %s", o.s.owner, rep.Duration, syncBound,
			led.activeFaults(time.Now().Add(-rep.Duration), time.Now()))
	}
	if err != nil {
		led.checkText("source error", err.Error())
	}
}

// recorder tells the ledger when the source it wraps first listed each
// token: the moment a rotation "shows in the source".
type recorder struct {
	clusterregistry.Watcher
	led *ledger
}

func (r recorder) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	list, err := r.Watcher.List(ctx)
	now := time.Now()
	for _, c := range list {
		if c.Config != nil && c.Config.BearerToken != "" {
			r.led.listed(c.Config.BearerToken, now)
		}
	}
	return list, err
}

// holdingBuilder is the ClientBuilder with every client's tenure recorded in
// the ledger: from before its Build starts to after its Release ends (or its
// Build fails), so that each recorded tenure contains the real one. Wrapped
// by shard.Wrap, it sees only the builds the Member allows, and the releases
// the Member forces after a lost Lease too.
func holdingBuilder(owner string, led *ledger) clusterregistry.BuilderFuncs[*clusterregistry.Client] {
	b := clusterregistry.ClientBuilder{QPS: 1000, Burst: 1000, RequestTimeout: 10 * time.Second}
	var mu sync.Mutex // protects held
	held := map[*clusterregistry.Client]*hold{}
	return clusterregistry.BuilderFuncs[*clusterregistry.Client]{
		BuildFunc: func(ctx context.Context, c clusterregistry.Cluster) (*clusterregistry.Client, error) {
			h := led.holdStart(owner, c.Name)
			client, err := b.Build(ctx, c)
			if err != nil {
				led.holdEnd(h)
				return nil, err
			}
			mu.Lock()
			held[client] = h
			mu.Unlock()
			led.holdBuilt(h)
			return client, nil
		},
		ReleaseFunc: func(client *clusterregistry.Client) {
			b.Release(client)
			mu.Lock()
			h := held[client]
			delete(held, client)
			mu.Unlock()
			if h != nil {
				led.holdEnd(h)
			}
		},
		ProbeFunc: b.Probe,
	}
}

// startService starts instance instance of replica id.
func startService(w *world, id string, instance int, led *ledger) (_ *service, err error) {
	s := &service{id: id, owner: fmt.Sprintf("%s#%d", id, instance), led: led, runErr: make(chan error, 1), memberErr: make(chan error, 1)}
	// Every log line of the Member and the Syncer is checked for
	// credentials as it is written.
	logger := funcr.New(func(prefix, args string) {
		s.logLines.Add(1)
		line := prefix + " " + args
		led.checkText("log line", line)
		led.log(s.owner + " " + line)
	}, funcr.Options{Verbosity: 10})

	// The hub through a proxy of this replica's own, in front of the hub's
	// (whose faults thus reach every replica).
	if s.hubProxy, err = localcluster.NewProxy(strings.TrimPrefix(w.hub.Server(), "https://")); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.hubProxy.Close()
		}
	}()
	hubConfig := w.hub.Config()
	hubConfig.Host = "https://" + s.hubProxy.Addr()
	hubConfig.QPS, hubConfig.Burst = 100, 200
	if s.hubHTTP, err = rest.HTTPClientFor(hubConfig); err != nil {
		return nil, err
	}
	hubClient, err := kubernetes.NewForConfigAndClient(hubConfig, s.hubHTTP)
	if err != nil {
		return nil, err
	}
	s.member, err = shard.New(shard.Config{
		Client:        hubClient.CoordinationV1(),
		Namespace:     leaseNamespace,
		Group:         shardGroup,
		Identity:      id,
		LeaseDuration: leaseDuration,
		RenewDeadline: renewDeadline,
		RetryPeriod:   retryPeriod,
		Logger:        logger,
	})
	if err != nil {
		return nil, err
	}
	dir, err := kubeconfig.NewDir(w.dir)
	if err != nil {
		return nil, err
	}
	secrets, err := secret.New(hubClient, secret.WithNamespace(fleetNamespace))
	if err != nil {
		return nil, err
	}
	src := compose.Merge(recorder{Watcher: dir, led: led}, recorder{Watcher: secrets, led: led})
	s.syncer, err = clusterregistry.NewSyncer(s.member.Source(src),
		shard.Wrap[*clusterregistry.Client](s.member, holdingBuilder(s.owner, led)),
		clusterregistry.WithInterval(5*time.Second),
		clusterregistry.WithBuildTimeout(5*time.Second),
		clusterregistry.WithSourceTimeout(15*time.Second),
		clusterregistry.WithBackoff(500*time.Millisecond, 5*time.Second),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{Interval: 2 * time.Second, Timeout: 2 * time.Second}),
		clusterregistry.WithDrainTimeout(30*time.Second),
		clusterregistry.WithObserver(observer{s: s}),
		clusterregistry.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	s.reg = s.syncer.Registry()
	workers, err := fleet.New(s.reg, s.work, fleet.WithLogger(logger))
	if err != nil {
		return nil, err
	}

	mw := httpcluster.New(s.reg)
	s.server = httptest.NewServer(mw.Handler(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		client, _ := httpcluster.Client[*clusterregistry.Client](r.Context())
		name, _ := httpcluster.ClusterName(r.Context())
		ts := time.Now()
		_, err := client.Kubernetes().CoreV1().Namespaces().Get(r.Context(), localcluster.Namespace, metav1.GetOptions{})
		if r.Context().Err() != nil {
			return // the reader went away: the end of the soak
		}
		s.request("http", name, ts, time.Now(), err)
		if err != nil {
			rw.WriteHeader(http.StatusBadGateway)
			return
		}
		rw.WriteHeader(http.StatusOK)
	})))

	// The Member and the Syncer share one context, as shard's doc wires
	// them: when it ends, the Syncer releases every client and the Member
	// then deletes its Lease.
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.memberErr <- s.member.Run(ctx) }()
	go func() { s.runErr <- s.syncer.Run(ctx) }()
	sub := s.reg.Subscribe()
	s.wg.Go(func() { s.checkEvents(ctx, sub) })
	s.wg.Go(func() {
		if err := workers.Start(ctx); err != nil {
			led.violation("fleet", "%s: Start: %v", s.owner, err)
		}
	})
	return s, nil
}

// stop ends the replica cleanly and waits for everything it started: the
// Member releases every client, then deletes its Lease. The hub proxy stays
// open, so that the connections still open through it can be counted.
func (s *service) stop() error {
	s.cancel()
	return s.wait()
}

// kill abandons the replica as kill -9 would, and returns at once: the path
// to the hub goes silent first, so that neither a Lease renewal nor its
// deletion reaches the hub, then everything is cancelled. Its clients stay
// held until it actually releases them (the ledger records when). finish
// waits for it to end and closes its proxy, which drops whatever it still
// wanted to say to the hub.
func (s *service) kill() {
	s.dead.Store(true)
	s.hubProxy.BlackHole()
	s.cancel()
}

// finish waits for a killed replica to end, then closes its hub proxy.
func (s *service) finish() error {
	err := s.wait()
	_ = s.hubProxy.Close()
	utilnet.CloseIdleConnectionsFor(s.hubHTTP.Transport)
	return err
}

func (s *service) wait() error {
	var errs []error
	timeout := time.After(2 * time.Minute)
	for _, ch := range []chan error{s.runErr, s.memberErr} {
		select {
		case err := <-ch:
			errs = append(errs, err)
		case <-timeout:
			errs = append(errs, fmt.Errorf("%s: Run did not return within 2 minutes", s.owner))
		}
	}
	s.wg.Wait()
	s.server.Close()
	utilnet.CloseIdleConnectionsFor(s.hubHTTP.Transport)
	return errors.Join(errs...)
}

// request records a request of this replica's, unless it has been killed.
func (s *service) request(via, cluster string, ts, te time.Time, err error) {
	if !s.dead.Load() {
		s.led.request(via, cluster, ts, te, err)
	}
}

// serves reports whether the replica serves cluster: its Registry has a
// client for it.
func (s *service) serves(cluster string) bool {
	info, ok := s.reg.Snapshot().Cluster(cluster)
	return ok && info.Serving
}

// checkEvents reads the replica's events: their generations never go back,
// every event is credential-free, and whenever the subscriber has caught up
// with the Registry (no event for a moment and the Registry still at the
// generation of the last event), the clusters it has been told of are
// exactly the Registry's, each with the client generation it was told of:
// no event was missed.
func (s *service) checkEvents(ctx context.Context, sub *clusterregistry.Subscription) {
	defer sub.Close()
	serving := map[string]known{}
	var last uint64
	for {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		ev, err := sub.Next(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, context.DeadlineExceeded) {
			s.compare(serving, last)
			continue
		}
		if err != nil {
			s.violation("events", "%s: Next: %v", s.owner, err)
			return
		}
		s.led.event()
		if ev.Err != nil {
			s.led.checkText("event error", ev.Err.Error())
		}
		if ev.Type == clusterregistry.EventResync {
			serving, last = map[string]known{}, 0
			continue
		}
		if !ev.Replay && ev.Generation < last {
			s.violation("event-order", "%s: %s %s at generation %d after generation %d", s.owner, ev.Type, ev.Name, ev.Generation, last)
		}
		last = max(last, ev.Generation)
		switch ev.Type {
		case clusterregistry.EventAdded, clusterregistry.EventUpdated:
			if _, ok := serving[ev.Name]; ok == (ev.Type == clusterregistry.EventAdded) && !ev.Replay {
				s.violation("event-order", "%s: %s for %s, which was serving=%v", s.owner, ev.Type, ev.Name, ok)
			}
			serving[ev.Name] = known{gen: ev.Generation}
		case clusterregistry.EventRemoved:
			delete(serving, ev.Name)
		}
	}
}

// known is what the events said of a serving cluster: its client's generation.
type known struct{ gen uint64 }

func (s *service) compare(serving map[string]known, last uint64) {
	snap := s.reg.Snapshot()
	if err := snap.SourceErr(); err != nil {
		s.led.checkText("source error", err.Error())
	}
	for info := range snap.Clusters() {
		if info.Err != nil {
			s.led.checkText("cluster error", info.Err.Error())
		}
	}
	if snap.Generation() != last {
		return // events of a newer generation are on their way
	}
	var missing []string
	for info := range snap.Clusters() {
		k, ok := serving[info.Name]
		switch {
		case info.Serving && !ok:
			missing = append(missing, info.Name+": serving, never Added")
		case info.Serving && k.gen != info.BuiltGeneration:
			missing = append(missing, fmt.Sprintf("%s: client of generation %d, told %d", info.Name, info.BuiltGeneration, k.gen))
		case !info.Serving && ok:
			missing = append(missing, info.Name+": not serving, never Removed")
		}
	}
	for name := range serving {
		if _, ok := snap.Cluster(name); !ok {
			missing = append(missing, name+": gone, never Removed")
		}
	}
	if len(missing) > 0 {
		s.violation("event-gap", "%s at generation %d: %s", s.owner, last, strings.Join(missing, "; "))
		// Take the Registry's word from here, so one gap counts once.
		clear(serving)
		for info := range snap.Clusters() {
			if info.Serving {
				serving[info.Name] = known{info.BuiltGeneration}
			}
		}
	}
}

// work is one cluster's worker, run by the replica's fleet.Fleet (which
// holds a Lease on the client meanwhile): a watch of ConfigMaps, renewed
// when it ends, and a read every second.
func (s *service) work(ctx context.Context, name string, client *clusterregistry.Client) {
	cms := client.Kubernetes().CoreV1().ConfigMaps(localcluster.Namespace)
	var watchDone chan struct{}
	defer func() {
		if watchDone != nil {
			<-watchDone
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if watchDone == nil {
			ts := time.Now()
			timeout := int64(30)
			wi, err := cms.Watch(ctx, metav1.ListOptions{TimeoutSeconds: &timeout})
			if ctx.Err() != nil {
				return
			}
			s.request("worker-watch", name, ts, time.Now(), err)
			if err == nil {
				watchDone = make(chan struct{})
				go func(done chan struct{}) {
					defer close(done)
					defer wi.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case _, ok := <-wi.ResultChan():
							if !ok {
								return
							}
						}
					}
				}(watchDone)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if watchDone != nil {
			select {
			case <-watchDone:
				watchDone = nil
			default:
			}
		}
		ts := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := client.Kubernetes().CoreV1().Namespaces().Get(rctx, localcluster.Namespace, metav1.GetOptions{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.request("worker", name, ts, time.Now(), err)
	}
}

// read is one reader's request: Get or Lease, then a request through the
// client, or one through the HTTP server. It reports false, having recorded
// nothing, when this replica does not serve name: it has no client for it
// (another replica owns it, or a handoff is under way), or it has stopped.
func (s *service) read(ctx context.Context, name string, mode int, hc *http.Client) bool {
	ts := time.Now()
	switch mode {
	case 0: // Get, then a request
		client, err := s.reg.Get(name)
		s.get(name, ts, time.Now())
		if err != nil {
			s.led.checkText("get error", err.Error())
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ts = time.Now()
		_, err = client.Kubernetes().CoreV1().Namespaces().Get(rctx, localcluster.Namespace, metav1.GetOptions{})
		if !over(ctx) {
			s.request("client", name, ts, time.Now(), err)
		}
	case 1: // Lease, then a request through the dynamic client
		lease, err := s.reg.Lease(name)
		s.get(name, ts, time.Now())
		if err != nil {
			s.led.checkText("lease error", err.Error())
			return false
		}
		defer lease.Release()
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ts = time.Now()
		_, err = lease.Client().Kubernetes().CoreV1().ConfigMaps(localcluster.Namespace).List(rctx, metav1.ListOptions{Limit: 5})
		if !over(ctx) {
			s.request("lease", name, ts, time.Now(), err)
		}
	default: // through httpcluster's middleware
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.server.URL+"/ns", nil)
		if err != nil {
			return true
		}
		req.Header.Set(httpcluster.DefaultHeader, name)
		resp, err := hc.Do(req)
		if err != nil {
			// The end of the soak cancelled it, or the replica was killed
			// meanwhile and its server closed: then another may serve it.
			return over(ctx)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		s.led.checkText("middleware answer", string(body))
		switch resp.StatusCode {
		case http.StatusOK, http.StatusBadGateway: // the handler recorded it
		case http.StatusNotFound, http.StatusServiceUnavailable:
			// Not here (404), or here without a client or stopped (503):
			// the middleware's answers for a cluster this replica does
			// not serve.
			return false
		default:
			if !s.dead.Load() {
				s.led.violation("middleware", "%s %s: %d %s", s.owner, name, resp.StatusCode, strings.TrimSpace(string(body)))
			}
		}
	}
	return true
}

// get records a Get or Lease, unless the replica was killed.
func (s *service) get(cluster string, ts, te time.Time) {
	if !s.dead.Load() {
		s.led.get(cluster, ts, te)
	}
}

// violation counts a violation of this replica's, unless it was killed.
func (s *service) violation(class, format string, args ...any) {
	if !s.dead.Load() {
		s.led.violation(class, format, args...)
	}
}

// over reports whether ctx has ended or its deadline has passed. A
// context's Err stays nil until its timer fires, a moment after the
// deadline, while client-go's rate limiter and the transport already fail
// a request for it: at the end of the soak, that is no fault's doing.
func over(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
