package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/examples/internal/dashboard"
	"github.com/clusterregistry/clusterregistry/examples/internal/metrics"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

type options struct {
	addr           string
	pause          time.Duration
	exitAfterSteps bool
	verbose        bool
	out            io.Writer
}

// buildTimeout is short so that the step that cuts a cluster off shows its
// error after seconds.
const buildTimeout = 3 * time.Second

// demo is the running demo: the clusters, the source the registry follows,
// the Syncer and the dashboard.
type demo struct {
	out    io.Writer
	env    *localcluster.Environment
	source *clusterregistry.MemorySource
	syncer *clusterregistry.Syncer[*clusterregistry.Client]
	url    string

	stopSyncer  context.CancelFunc
	syncerDone  chan error
	server      *http.Server
	serveDone   chan error
	endRequests context.CancelFunc // ends the contexts of the dashboard's requests
}

// run runs the whole demo and returns when ctx ends (Ctrl-C), or after the
// last step with exitAfterSteps. Everything it started is stopped by then.
func run(ctx context.Context, opts options) (err error) {
	out := opts.out
	fmt.Fprintln(out, "clusterregistry demo: one client per Kubernetes cluster, kept in step with a source.")
	fmt.Fprintln(out)

	d, err := start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.stop()) }()

	fmt.Fprintf(out, "\nDashboard: %s  (open it now: it follows every step below)\n", d.url)
	d.printState(ctx)

	steps := []struct {
		title string
		do    func(context.Context) error
	}{
		{"Add a cluster: cluster-3 joins the source", d.addCluster},
		{"Change a cluster: rotate cluster-2's token while a request still uses the old client", d.rotateToken},
		{"A cluster stops answering while its description changes", d.cutOff},
		{"Remove a cluster: cluster-2 leaves the source", d.removeCluster},
	}
	for i, s := range steps {
		if err := pause(ctx, opts.pause); err != nil {
			return nil // Ctrl-C between steps
		}
		fmt.Fprintf(out, "\nStep %d of %d. %s\n", i+1, len(steps), s.title)
		if err := s.do(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}

	fmt.Fprintln(out)
	if opts.exitAfterSteps {
		fmt.Fprintln(out, "All steps done (-exit-after-steps): stopping.")
		return nil
	}
	fmt.Fprintf(out, "All steps done. The dashboard keeps serving at %s; press Ctrl-C to stop everything.\n", d.url)
	<-ctx.Done()
	fmt.Fprintln(out)
	return nil
}

// start starts the clusters, the Syncer and the dashboard. On error it stops
// whatever it started.
func start(ctx context.Context, opts options) (_ *demo, err error) {
	out := opts.out
	d := &demo{out: out}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.stop())
		}
	}()

	fmt.Fprintln(out, "Preparing etcd and kube-apiserver. The first run builds them from source, which")
	fmt.Fprintln(out, "takes minutes (progress below); later runs reuse them and take seconds.")
	begin := time.Now()
	progress := indent(out, "  ")
	bins, err := localcluster.EnsureBinaries(ctx, progress)
	if err != nil {
		return nil, fmt.Errorf("building the local Kubernetes servers: %w", err)
	}
	fmt.Fprintf(out, "  servers ready (%s)\n", time.Since(begin).Round(100*time.Millisecond))

	fmt.Fprintln(out, "Starting 3 local clusters (one etcd, three kube-apiservers on 127.0.0.1)...")
	d.env, err = localcluster.Start(ctx, localcluster.Options{Clusters: 3, Binaries: bins, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("starting the local clusters: %w", err)
	}
	if err := seed(ctx, d.env); err != nil {
		return nil, err
	}

	// The source holds what should exist. Here it is in memory; a service
	// reads kubeconfig files, Secrets in a hub cluster or a database.
	d.source = clusterregistry.NewMemorySource(
		d.describe("cluster-1", true, "region", "eu-west"),
		d.describe("cluster-2", false, "region", "us-east"),
	)
	logger := logr.Discard()
	if opts.verbose {
		logger = funcr.New(func(prefix, args string) { fmt.Fprintln(out, "  syncer:", prefix, args) }, funcr.Options{})
	}
	m := metrics.New(prometheus.NewRegistry())
	d.syncer, err = clusterregistry.NewSyncer(d.source,
		clusterregistry.ClientBuilder{UserAgent: "clusterregistry-demo", QPS: 50, Burst: 100, Observer: m},
		clusterregistry.WithBuildTimeout(buildTimeout),
		clusterregistry.WithBackoff(time.Second, 10*time.Second),
		clusterregistry.WithDrainTimeout(30*time.Second),
		clusterregistry.WithLogger(logger),
		clusterregistry.WithObserver(m),
		// Probed often, so that the page shows a cluster cut off within
		// seconds.
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{Interval: 2 * time.Second, Timeout: time.Second, FailureThreshold: 2}))
	if err != nil {
		return nil, err
	}
	m.WatchClusters(func() []clusterregistry.ClusterInfo { return slices.Collect(d.syncer.Registry().Snapshot().Clusters()) })
	var runCtx context.Context
	runCtx, d.stopSyncer = context.WithCancel(context.Background())
	d.syncerDone = make(chan error, 1)
	// Run owns the clients; stop cancels it and waits.
	go func() { d.syncerDone <- d.syncer.Run(runCtx) }()
	if err := d.syncer.WaitForFirstSync(ctx); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s is in use: pass -addr 127.0.0.1:0 for any free port", opts.addr)
		}
		return nil, err
	}
	d.url = "http://" + ln.Addr().String()
	var requests context.Context
	requests, d.endRequests = context.WithCancel(context.Background())
	d.server = &http.Server{
		Handler:           dashboard.New(d.syncer, dashboard.WithMetrics(m.Handler()), dashboard.WithRequests(m.RecentHandler())),
		ReadHeaderTimeout: 10 * time.Second,
		// The requests' contexts end in stop, before Shutdown: the page's
		// event stream would hold Shutdown otherwise.
		BaseContext: func(net.Listener) context.Context { return requests },
	}
	d.serveDone = make(chan error, 1)
	// Serve ends when stop shuts the server down.
	go func() { d.serveDone <- d.server.Serve(ln) }()
	return d, nil
}

// stop stops the dashboard, the Syncer (which releases every client) and
// the clusters, in that order. It may be called on a half-started demo.
func (d *demo) stop() error {
	var errs []error
	if d.server != nil {
		d.endRequests()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("dashboard: %w", err))
		}
		cancel()
		if err := <-d.serveDone; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("dashboard: %w", err))
		}
		d.server = nil
	}
	if d.stopSyncer != nil {
		d.stopSyncer()
		errs = append(errs, <-d.syncerDone)
		d.stopSyncer = nil
	}
	if d.env != nil {
		fmt.Fprintln(d.out, "Stopping the local clusters...")
		errs = append(errs, d.env.Stop())
		d.env = nil
		fmt.Fprintln(d.out, "Stopped: the dashboard, the Syncer (every client released) and every server process.")
	}
	return errors.Join(errs...)
}

// describe returns what the source lists for one of the local clusters:
// its address, CA and current token.
func (d *demo) describe(name string, isDefault bool, labels ...string) clusterregistry.Cluster {
	c := clusterregistry.Cluster{Name: name, Config: d.env.Cluster(name).Config(), Default: isDefault}
	if len(labels) > 0 {
		c.Labels = map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			c.Labels[labels[i]] = labels[i+1]
		}
	}
	return c
}

// seed gives every cluster a namespace "shop" with a few pods (they stay
// Pending: the local clusters have API servers only, no nodes), a different
// number per cluster so that the dashboard tells them apart.
func seed(ctx context.Context, env *localcluster.Environment) error {
	for i, c := range env.Clusters() {
		cs, done, err := clientset(c.AdminConfig())
		if err != nil {
			return err
		}
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
		for j := range i + 1 {
			if err != nil {
				break
			}
			_, err = cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", j+1), Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			}, metav1.CreateOptions{})
		}
		done()
		if err != nil {
			return fmt.Errorf("seeding %s: %w", c.Name(), err)
		}
	}
	return nil
}

// clientset returns a clientset made outside the registry, and the func that
// closes its connections: nobody else releases its connection pool.
func clientset(cfg *rest.Config) (*kubernetes.Clientset, func(), error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, nil, err
	}
	return cs, func() { utilnet.CloseIdleConnectionsFor(hc.Transport) }, nil
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// indent returns a writer that prefixes every line written to w.
func indent(w io.Writer, prefix string) io.Writer {
	return &prefixWriter{w: w, prefix: prefix}
}

type prefixWriter struct {
	mu     sync.Mutex // serialises writes from the build's progress goroutine
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for line := range strings.Lines(string(b)) {
		if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
