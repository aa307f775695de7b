// Command controller is a multi-cluster controller skeleton: a
// controller-runtime manager runs the clusterregistry Syncer over the
// clusters of a kubeconfig, and a Fleet that runs one pod watcher per
// cluster, started and stopped as clusters come and go.
//
//	cd examples && go run ./controller                       # $KUBECONFIG, else ~/.kube/config
//	cd examples && go run ./controller -kubeconfig path/to/config
//
// The manager's own cluster (for leader election, and for controllers of
// its own) is the kubeconfig's current context. Try it against local
// clusters: start `cd test && go run ./cmd/localclusters`, and pass the
// kubeconfig path it prints.
//
// Edit the kubeconfig while it runs (add or remove a context, change a
// token): within a second or two the Fleet starts, restarts or stops the
// cluster's watcher.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

func main() {
	path := flag.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	flag.Parse()

	log := newLogger(os.Stdout)
	ctrl.SetLogger(log)
	if err := run(ctrl.SetupSignalHandler(), *path, log); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
}

func newLogger(w io.Writer) logr.Logger {
	return funcr.New(func(prefix, args string) {
		fmt.Fprintln(w, time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{})
}

// syncerRunnable hands a Syncer to a controller-runtime manager. Syncer.Run
// already has the shape of a Runnable's Start; the adapter adds that every
// replica runs its own Syncer, not only the leader.
type syncerRunnable[T any] struct {
	*clusterregistry.Syncer[T]
}

// Start runs the Syncer until ctx ends.
func (r syncerRunnable[T]) Start(ctx context.Context) error { return r.Run(ctx) }

// NeedLeaderElection reports false: every replica keeps its own Registry.
func (syncerRunnable[T]) NeedLeaderElection() bool { return false }

var (
	_ manager.Runnable               = syncerRunnable[*clusterregistry.Client]{}
	_ manager.LeaderElectionRunnable = syncerRunnable[*clusterregistry.Client]{}
	_ manager.Runnable               = (*Fleet[*clusterregistry.Client])(nil)
)

// run runs the manager until ctx ends.
func run(ctx context.Context, path string, log logr.Logger) error {
	opts := []kubeconfig.Option{}
	if path != "" {
		opts = append(opts, kubeconfig.WithPath(path))
	}
	source, err := kubeconfig.New(opts...)
	if err != nil {
		return err
	}

	// The manager's own cluster: the current context of the same files.
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	home, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("the manager's cluster: %w", err)
	}
	mgr, err := manager.New(home, manager.Options{
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"}, // off for the example
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return err
	}

	syncer, err := clusterregistry.NewSyncer(source,
		clusterregistry.ClientBuilder{UserAgent: "clusterregistry-controller"},
		clusterregistry.WithLogger(log.WithName("syncer")))
	if err != nil {
		return err
	}
	if err := mgr.Add(syncerRunnable[*clusterregistry.Client]{syncer}); err != nil {
		return err
	}
	fleet := &Fleet[*clusterregistry.Client]{
		Registry: syncer.Registry(),
		Work:     watchPods[*clusterregistry.Client](log.WithName("pods")),
		Log:      log.WithName("fleet"),
	}
	if err := mgr.Add(fleet); err != nil {
		return err
	}
	// Start blocks until ctx ends, then stops the Fleet (every worker) and
	// the Syncer (every client) before it returns.
	return mgr.Start(ctx)
}
