// Command controller is a multi-cluster controller: a controller-runtime
// manager runs the clusterregistry Syncer over the clusters of a kubeconfig,
// a controller that keeps the hub's ConfigMap default/fleet-config in every
// cluster (configmap.go), and a Fleet that runs one pod watcher per cluster
// (pods.go), started and stopped as clusters come and go.
//
//	cd examples && go run ./controller                       # $KUBECONFIG, else ~/.kube/config
//	cd examples && go run ./controller -kubeconfig path/to/config
//
// The hub, the manager's own cluster (for leader election and the ConfigMap
// to copy), is the kubeconfig's current context. Try it against local
// clusters: start `cd test && go run ./cmd/localclusters`, and pass the
// kubeconfig path it prints; then create the ConfigMap in the hub:
//
//	kubectl create configmap fleet-config --from-literal=colour=blue
//
// and see it appear in every cluster. Edit the kubeconfig while it runs (add
// or remove a context, change a token): within a second or two the cluster
// is watched, re-watched on its new client, or forgotten.
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/clusterregistry/clusterregistry"
	mcr "github.com/clusterregistry/clusterregistry/controllerruntime"
	"github.com/clusterregistry/clusterregistry/fleet"
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

// configMap is the hub's ConfigMap that the controller keeps in every cluster.
var configMap = types.NamespacedName{Namespace: "default", Name: "fleet-config"}

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

	syncer, err := clusterregistry.NewSyncer(source, mcr.Builder{Logger: log.WithName("cluster")},
		clusterregistry.WithLogger(log.WithName("syncer")))
	if err != nil {
		return err
	}
	if err := mgr.Add(mcr.SyncerRunnable(syncer)); err != nil {
		return err
	}
	reg := syncer.Registry()
	configMaps, err := newConfigMapController(mgr, reg, configMap)
	if err != nil {
		return err
	}
	if err := mgr.Add(configMaps); err != nil {
		return err
	}
	pods, err := fleet.New(reg, func(ctx context.Context, name string, cl *mcr.Cluster) {
		// A clientset on the cluster's own HTTP client (and connections).
		cs, err := kubernetes.NewForConfigAndClient(cl.GetConfig(), cl.GetHTTPClient())
		if err != nil {
			log.Error(err, "No clientset", "cluster", name)
			return
		}
		watchPods[clientset](log.WithName("pods"))(ctx, name, clientset{cs})
	}, fleet.WithLogger(log.WithName("fleet")))
	if err != nil {
		return err
	}
	if err := mgr.Add(pods); err != nil {
		return err
	}
	// Start blocks until ctx ends, then stops the controllers and the Fleet
	// (every watch and worker) and the Syncer (every client) before it
	// returns.
	return mgr.Start(ctx)
}

// clientset is a kubeClient for the pod watcher.
type clientset struct{ cs kubernetes.Interface }

func (c clientset) Kubernetes() kubernetes.Interface { return c.cs }
