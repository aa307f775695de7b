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
	"github.com/clusterregistry/clusterregistry/httpcluster"
	"github.com/clusterregistry/clusterregistry/source/compose"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

type registry = clusterregistry.Registry[*clusterregistry.Client]

// service is one replica of the service under test, as a real one runs the
// library: a Syncer over the merged sources (the kubeconfig directory and the
// hub's Secrets, through the hub's proxy with a credential of its own), an
// HTTP server behind httpcluster's middleware, and a worker per cluster.
// Several can run side by side (replicas); each reports to the shared ledger
// under its id.
type service struct {
	id       string
	led      *ledger
	syncer   *clusterregistry.Syncer[*clusterregistry.Client]
	reg      *registry
	hubHTTP  *http.Client
	server   *httptest.Server
	logLines atomic.Int64

	cancel context.CancelFunc
	runErr chan error
	wg     sync.WaitGroup // the fleet and the subscriber
}

// observer checks every build and sync against the bounds.
type observer struct {
	clusterregistry.NopObserver
	led *ledger
}

func (o observer) BuildDone(cluster string, d time.Duration, err error) {
	te := time.Now()
	o.led.request("build", cluster, te.Add(-d), te, err)
}

func (o observer) SyncDone(rep clusterregistry.SyncReport, err error) {
	if rep.Duration > syncBound {
		o.led.violation("slow-sync", "a sync took %s (bound %s); faults meanwhile: %s", rep.Duration, syncBound,
			o.led.activeFaults(time.Now().Add(-rep.Duration), time.Now()))
	}
	if err != nil {
		o.led.checkText("source error", err.Error())
	}
}

// recorder tells the ledger when the source it wraps first listed each
// token: the moment a rotation "shows in the source" for this replica.
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

func startService(w *world, id string, led *ledger) (*service, error) {
	s := &service{id: id, led: led, runErr: make(chan error, 1)}
	dir, err := kubeconfig.NewDir(w.dir)
	if err != nil {
		return nil, err
	}
	hubConfig := w.hub.Config()
	if s.hubHTTP, err = rest.HTTPClientFor(hubConfig); err != nil {
		return nil, err
	}
	hubClient, err := kubernetes.NewForConfigAndClient(hubConfig, s.hubHTTP)
	if err != nil {
		return nil, err
	}
	secrets, err := secret.New(hubClient, secret.WithNamespace(fleetNamespace))
	if err != nil {
		return nil, err
	}
	// Every log line of the Syncer is checked for credentials as it is written.
	logger := funcr.New(func(prefix, args string) {
		s.logLines.Add(1)
		line := prefix + " " + args
		led.checkText("log line", line)
		led.log(s.id + " " + line)
	}, funcr.Options{Verbosity: 10})
	builder := clusterregistry.ClientBuilder{QPS: 1000, Burst: 1000, RequestTimeout: 10 * time.Second}
	src := compose.Merge(recorder{Watcher: dir, led: led}, recorder{Watcher: secrets, led: led})
	s.syncer, err = clusterregistry.NewSyncer(src, builder,
		clusterregistry.WithInterval(5*time.Second),
		clusterregistry.WithBuildTimeout(5*time.Second),
		clusterregistry.WithSourceTimeout(15*time.Second),
		clusterregistry.WithBackoff(500*time.Millisecond, 5*time.Second),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{Interval: 2 * time.Second, Timeout: 2 * time.Second}),
		clusterregistry.WithDrainTimeout(30*time.Second),
		clusterregistry.WithObserver(observer{led: led}),
		clusterregistry.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	s.reg = s.syncer.Registry()

	mw := httpcluster.New(s.reg)
	s.server = httptest.NewServer(mw.Handler(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		client, _ := httpcluster.Client[*clusterregistry.Client](r.Context())
		name, _ := httpcluster.ClusterName(r.Context())
		ts := time.Now()
		_, err := client.Kubernetes().CoreV1().Namespaces().Get(r.Context(), localcluster.Namespace, metav1.GetOptions{})
		if r.Context().Err() != nil {
			return // the reader went away: the end of the soak
		}
		led.request("http", name, ts, time.Now(), err)
		if err != nil {
			rw.WriteHeader(http.StatusBadGateway)
			return
		}
		rw.WriteHeader(http.StatusOK)
	})))

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.runErr <- s.syncer.Run(ctx) }()
	sub := s.reg.Subscribe()
	s.wg.Go(func() { s.checkEvents(ctx, sub) })
	s.wg.Go(func() { s.fleet(ctx) })
	return s, nil
}

// stop ends the replica and waits for everything it started.
func (s *service) stop() error {
	s.cancel()
	var err error
	select {
	case err = <-s.runErr:
	case <-time.After(2 * time.Minute):
		err = errors.New("Run did not return within 2 minutes")
	}
	s.wg.Wait()
	s.server.Close()
	utilnet.CloseIdleConnectionsFor(s.hubHTTP.Transport)
	return err
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
			s.led.violation("events", "%s: Next: %v", s.id, err)
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
			s.led.violation("event-order", "%s: %s %s at generation %d after generation %d", s.id, ev.Type, ev.Name, ev.Generation, last)
		}
		last = max(last, ev.Generation)
		switch ev.Type {
		case clusterregistry.EventAdded, clusterregistry.EventUpdated:
			if _, ok := serving[ev.Name]; ok == (ev.Type == clusterregistry.EventAdded) && !ev.Replay {
				s.led.violation("event-order", "%s: %s for %s, which was serving=%v", s.id, ev.Type, ev.Name, ok)
			}
			serving[ev.Name] = known{gen: ev.Generation}
			s.led.own(s.id, ev.Name, true)
		case clusterregistry.EventRemoved:
			delete(serving, ev.Name)
			s.led.own(s.id, ev.Name, false)
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
		s.led.violation("event-gap", "%s at generation %d: %s", s.id, last, strings.Join(missing, "; "))
		// Take the Registry's word from here, so one gap counts once.
		clear(serving)
		for info := range snap.Clusters() {
			if info.Serving {
				serving[info.Name] = known{info.BuiltGeneration}
			}
		}
	}
}

// fleet runs one worker per cluster that has a client: it holds a Lease on
// the client, watches ConfigMaps and reads a namespace every second through
// it, and is restarted when the client is replaced and stopped when the
// cluster goes. It reconciles on every event and every second. (The
// library's Fleet will take its place.)
func (s *service) fleet(ctx context.Context) {
	type worker struct {
		client *clusterregistry.Client
		cancel context.CancelFunc
		done   chan struct{}
	}
	workers := map[string]*worker{}
	stopWorker := func(name string) {
		w := workers[name]
		w.cancel()
		<-w.done
		delete(workers, name)
	}
	defer func() {
		for name := range workers {
			stopWorker(name)
		}
	}()
	sub := s.reg.Subscribe()
	defer sub.Close()
	for {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := sub.Next(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return
		}
		snap := s.reg.Snapshot()
		for name, w := range workers {
			if c, err := snap.Get(name); err != nil || c != w.client {
				stopWorker(name)
			}
		}
		for name := range snap.All() {
			if _, ok := workers[name]; ok {
				continue
			}
			lease, err := s.reg.Lease(name)
			if err != nil {
				continue // replaced or gone since the snapshot; the next round sees it
			}
			wctx, cancel := context.WithCancel(ctx)
			w := &worker{client: lease.Client(), cancel: cancel, done: make(chan struct{})}
			workers[name] = w
			go func() {
				defer close(w.done)
				defer lease.Release()
				s.work(wctx, name, lease.Client())
			}()
		}
	}
}

// work is one cluster's worker: a watch of ConfigMaps, renewed when it ends,
// and a read every second.
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
			s.led.request("worker-watch", name, ts, time.Now(), err)
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
		s.led.request("worker", name, ts, time.Now(), err)
	}
}

// read is one reader's request: Get or Lease, then a request through the
// client, or one through the HTTP server.
func (s *service) read(ctx context.Context, name string, mode int, hc *http.Client) {
	ts := time.Now()
	switch mode {
	case 0: // Get, then a request
		client, err := s.reg.Get(name)
		s.led.get(time.Since(ts), name)
		if err != nil {
			s.led.request("get", name, ts, time.Now(), err)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ts = time.Now()
		_, err = client.Kubernetes().CoreV1().Namespaces().Get(rctx, localcluster.Namespace, metav1.GetOptions{})
		if ctx.Err() == nil {
			s.led.request("client", name, ts, time.Now(), err)
		}
	case 1: // Lease, then a request through the dynamic client
		lease, err := s.reg.Lease(name)
		s.led.get(time.Since(ts), name)
		if err != nil {
			s.led.request("lease", name, ts, time.Now(), err)
			return
		}
		defer lease.Release()
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ts = time.Now()
		_, err = lease.Client().Kubernetes().CoreV1().ConfigMaps(localcluster.Namespace).List(rctx, metav1.ListOptions{Limit: 5})
		if ctx.Err() == nil {
			s.led.request("lease", name, ts, time.Now(), err)
		}
	default: // through httpcluster's middleware
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.server.URL+"/ns", nil)
		if err != nil {
			return
		}
		req.Header.Set(httpcluster.DefaultHeader, name)
		resp, err := hc.Do(req)
		if err != nil {
			return // only the end of the soak cancels it
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK, http.StatusBadGateway: // the handler recorded it
		default:
			s.led.checkText("middleware answer", string(body))
			s.led.violation("middleware", "%s: %d %s", name, resp.StatusCode, strings.TrimSpace(string(body)))
		}
	}
}
