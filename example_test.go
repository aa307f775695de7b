package clusterregistry_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

// hostBuilder is a Builder whose "client" is just the API server's address,
// so that the examples run without a cluster.
var hostBuilder = clusterregistry.BuilderFuncs[string]{
	BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) {
		return c.Config.Host, nil
	},
}

// The common case: clusters from a source, the ready client bundle, a
// background Syncer, and lookups from request handlers.
func Example() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod", Default: true, Config: &rest.Config{Host: "https://prod.example:6443"}},
		clusterregistry.Cluster{Name: "staging", Config: &rest.Config{Host: "https://staging.example:6443"}},
	)
	syncer, err := clusterregistry.NewSyncer(source, hostBuilder, clusterregistry.WithInterval(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- syncer.Run(ctx) }() // Run releases every client when ctx ends
	if err := syncer.WaitForFirstSync(ctx); err != nil {
		log.Fatal(err)
	}

	registry := syncer.Registry()
	host, _ := registry.Get("staging")
	fmt.Println("staging:", host)
	host, _ = registry.Default()
	fmt.Println("default:", host)
	_, err = registry.Get("dev")
	fmt.Println(errors.Is(err, clusterregistry.ErrClusterNotFound), err)

	stop()
	<-done
	// Output:
	// staging: https://staging.example:6443
	// default: https://prod.example:6443
	// true cluster "dev": cluster not found
}

// With the ready bundle, each cluster gets a typed clientset, a dynamic
// client and a discovery client over one shared *http.Client.
func ExampleClientBuilder() {
	source := clusterregistry.NewMemorySource() // or a kubeconfig, Secret or SQL source
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.ClientBuilder{UserAgent: "my-dashboard", QPS: 50, Burst: 100})
	if err != nil {
		log.Fatal(err)
	}
	_ = syncer // run it with syncer.Run(ctx); then:
	// client, err := syncer.Registry().Get("prod")
	// pods, err := client.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
}

// A long-lived use of a client (a watch, a log stream) takes a lease, so a
// sync that replaces the cluster's client does not release it underneath.
func ExampleRegistry_Lease() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod", Config: &rest.Config{Host: "https://old.example"}})
	syncer, _ := clusterregistry.NewSyncer(source, clusterregistry.BuilderFuncs[string]{
		BuildFunc:   hostBuilder.BuildFunc,
		ReleaseFunc: func(host string) { fmt.Println("released", host) },
	})
	ctx := context.Background()
	_, _ = syncer.Sync(ctx)

	lease, err := syncer.Registry().Lease("prod")
	if err != nil {
		log.Fatal(err)
	}
	source.Upsert(clusterregistry.Cluster{Name: "prod", Config: &rest.Config{Host: "https://new.example"}})
	_, _ = syncer.Sync(ctx)

	current, _ := syncer.Registry().Get("prod")
	fmt.Println("serving", current, "while the lease holds", lease.Client())
	lease.Release()
	// Output:
	// serving https://new.example while the lease holds https://old.example
	// released https://old.example
}

// A Snapshot is a consistent view that costs nothing to take and never
// changes, for pages that list every cluster.
func ExampleRegistry_Snapshot() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "b", Config: &rest.Config{Host: "https://b.example"}},
		clusterregistry.Cluster{Name: "a", Default: true, Config: &rest.Config{Host: "https://a.example"}},
		clusterregistry.Cluster{Name: "broken", Config: &rest.Config{}},
	)
	syncer, _ := clusterregistry.NewSyncer(source, hostBuilder)
	_, _ = syncer.Sync(context.Background())

	snap := syncer.Registry().Snapshot()
	fmt.Println("generation", snap.Generation())
	for info := range snap.Clusters() {
		fmt.Printf("%s default=%v serving=%v err=%v\n", info.Name, info.Default, info.Serving, info.Err)
	}
	// Output:
	// generation 1
	// a default=true serving=true err=<nil>
	// b default=false serving=true err=<nil>
	// broken default=false serving=false err=cluster "broken": field config.host: must not be empty
}

// Sync runs one sync at once and reports what it did.
func ExampleSyncer_Sync() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "a", Config: &rest.Config{Host: "https://a.example"}},
		clusterregistry.Cluster{Name: "b", Config: &rest.Config{Host: "https://b.example"}},
	)
	syncer, _ := clusterregistry.NewSyncer(source, hostBuilder)
	ctx := context.Background()
	rep, _ := syncer.Sync(ctx)
	fmt.Println("added", rep.Added, "generation", rep.Generation)

	source.Upsert(clusterregistry.Cluster{Name: "b", Config: &rest.Config{Host: "https://b2.example"}})
	source.Delete("a")
	rep, _ = syncer.Sync(ctx)
	fmt.Println("updated", rep.Updated, "removed", rep.Removed, "generation", rep.Generation)

	rep, _ = syncer.Sync(ctx)
	fmt.Println("published", rep.Published, "unchanged", rep.Unchanged)
	// Output:
	// added [a b] generation 1
	// updated [b] removed [a] generation 2
	// published false unchanged 1
}

// A Syncer that only Sync drives, in a command that syncs once, say, is
// stopped with Close, which releases every client.
func ExampleSyncer_Close() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "a", Config: &rest.Config{Host: "https://a.example"}})
	syncer, _ := clusterregistry.NewSyncer(source, clusterregistry.BuilderFuncs[string]{
		BuildFunc:   hostBuilder.BuildFunc,
		ReleaseFunc: func(host string) { fmt.Println("released", host) },
	})
	_, _ = syncer.Sync(context.Background())
	if err := syncer.Close(); err != nil {
		log.Fatal(err)
	}
	_, err := syncer.Registry().Get("a")
	fmt.Println(err, errors.Is(err, clusterregistry.ErrStopped))
	// Output:
	// released https://a.example
	// cluster "a": syncer stopped true
}

// SourceFunc turns any function into a source: here, a fixed list.
func ExampleSourceFunc() {
	source := clusterregistry.SourceFunc(func(ctx context.Context) ([]clusterregistry.Cluster, error) {
		return []clusterregistry.Cluster{{Name: "local", Config: &rest.Config{Host: "https://127.0.0.1:6443"}}}, nil
	})
	syncer, _ := clusterregistry.NewSyncer(source, hostBuilder)
	_, _ = syncer.Sync(context.Background())
	fmt.Println(syncer.Registry().Snapshot().Names())
	// Output: [local]
}
