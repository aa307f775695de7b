// Command dashboard serves a small multi-cluster web page for the clusters
// of your kubeconfig: the cluster list with versions and errors, the
// namespaces and pods of each cluster, and a button that runs a sync.
//
//	cd examples && go run ./dashboard                 # $KUBECONFIG, else ~/.kube/config
//	cd examples && go run ./dashboard -kubeconfig path/to/config -addr 127.0.0.1:8080
//
// Edits of the kubeconfig show on the page within a second or two. Without
// a kubeconfig, run the demo instead (`go run ./demo`): it serves this same
// dashboard over three local clusters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/examples/internal/dashboard"
	"github.com/clusterregistry/clusterregistry/examples/internal/metrics"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	path := flag.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *path); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, path string) error {
	var opts []kubeconfig.Option
	if path != "" {
		opts = append(opts, kubeconfig.WithPath(path))
	}
	source, err := kubeconfig.New(opts...)
	if err != nil {
		return err
	}
	if !anyExists(source.Paths()) {
		return fmt.Errorf("no kubeconfig at %v: set KUBECONFIG or -kubeconfig, or run the demo (go run ./demo), "+
			"which serves this dashboard over local clusters", source.Paths())
	}
	m := metrics.New(prometheus.NewRegistry())
	syncer, err := clusterregistry.NewSyncer(source,
		clusterregistry.ClientBuilder{UserAgent: "clusterregistry-dashboard", QPS: 50, Burst: 100, Observer: m},
		clusterregistry.WithObserver(m),
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{}))
	if err != nil {
		return err
	}
	m.WatchClusters(func() []clusterregistry.ClusterInfo { return slices.Collect(syncer.Registry().Snapshot().Clusters()) })
	runCtx, cancel := context.WithCancel(context.Background())
	syncDone := make(chan error, 1)
	// The Syncer runs until the server has stopped, then releases every client.
	go func() { syncDone <- syncer.Run(runCtx) }()
	defer func() {
		cancel()
		<-syncDone
	}()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           dashboard.New(syncer, dashboard.WithMetrics(m.Handler()), dashboard.WithRequests(m.RecentHandler())),
		ReadHeaderTimeout: 10 * time.Second,
		// Ctrl-C ends every request's context: the event streams return,
		// and Shutdown does not wait for them.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }() // ends with Shutdown below
	fmt.Printf("Dashboard of %v: http://%s  (Ctrl-C stops)\n", source.Paths(), ln.Addr())
	select {
	case err := <-serveDone:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func anyExists(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
