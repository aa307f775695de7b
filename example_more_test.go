package clusterregistry_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

// addrBuilder is a Builder whose "client" is the API server's address, so
// that these examples run without a cluster.
var addrBuilder = clusterregistry.BuilderFuncs[string]{
	BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) {
		return c.Config.Host, nil
	},
}

// A MemorySource holds clusters that the program itself decides: a list from
// flags or a config file, or clusters added and removed through an admin API.
// Each change wakes a running Syncer at once.
func ExampleMemorySource() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod", Default: true, Config: &rest.Config{Host: "https://prod.example"}},
	)
	syncer, err := clusterregistry.NewSyncer(source, addrBuilder)
	if err != nil {
		log.Fatal(err)
	}
	defer syncer.Close()
	ctx := context.Background()

	source.Upsert(clusterregistry.Cluster{Name: "staging", Config: &rest.Config{Host: "https://staging.example"}})
	_, _ = syncer.Sync(ctx) // Run would sync by itself, woken by the change
	fmt.Println(syncer.Registry().Snapshot().Names())

	source.Delete("staging")
	_, _ = syncer.Sync(ctx)
	fmt.Println(syncer.Registry().Snapshot().Names())
	// Output:
	// [prod staging]
	// [prod]
}

// A subscriber first receives the state as it is (events marked Replay), then
// every change. Next waits for the next event; a subscriber that falls behind
// is resynced rather than slowing the Syncer.
func ExampleRegistry_Subscribe() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod", Config: &rest.Config{Host: "https://prod.example"}})
	syncer, err := clusterregistry.NewSyncer(source, addrBuilder)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	_, _ = syncer.Sync(ctx)

	sub := syncer.Registry().Subscribe()
	defer sub.Close()
	source.Upsert(clusterregistry.Cluster{Name: "dev", Config: &rest.Config{Host: "https://dev.example"}})
	_, _ = syncer.Sync(ctx)
	_ = syncer.Close() // removes every cluster, then ends the subscription

	for {
		ev, err := sub.Next(ctx)
		if errors.Is(err, clusterregistry.ErrStopped) {
			fmt.Println("stopped")
			return
		}
		fmt.Println(ev.Type, ev.Name, "replay:", ev.Replay)
	}
	// Output:
	// Added prod replay: true
	// Added dev replay: false
	// Removed dev replay: false
	// Removed prod replay: false
	// stopped
}

// Clusters describes every cluster of a snapshot in name order: whether it
// serves, its latest error, which one is the default. A status page or a
// /clusters endpoint is a loop over it.
func ExampleSnapshot_Clusters() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod", Default: true, Config: &rest.Config{Host: "https://prod.example"}},
		clusterregistry.Cluster{Name: "broken", Config: &rest.Config{Host: "https://broken.example"}},
	)
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(ctx context.Context, c clusterregistry.Cluster) (string, error) {
			if c.Name == "broken" {
				return "", errors.New("no route to host")
			}
			return addrBuilder.BuildFunc(ctx, c)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer syncer.Close()
	_, _ = syncer.Sync(context.Background())

	for info := range syncer.Registry().Snapshot().Clusters() {
		fmt.Printf("%s default=%t serving=%t err=%v\n", info.Name, info.Default, info.Serving, info.Err)
	}
	// Output:
	// broken default=false serving=false err=cluster "broken": no route to host
	// prod default=true serving=true err=<nil>
}

// Names must be safe in URLs, headers, metric labels and log lines. The Syncer
// ignores listed clusters whose names fail; a program that takes names from
// people (an admin API, a form) checks them before upserting.
func ExampleValidateName() {
	for _, name := range []string{"prod-eu-1", "user@gke_prod", "", "-prod", "arn:aws:eks:eu-west-1:1234:cluster/prod"} {
		if err := clusterregistry.ValidateName(name); err != nil {
			fmt.Printf("%q: invalid\n", name)
			continue
		}
		fmt.Printf("%q: ok\n", name)
	}
	// Output:
	// "prod-eu-1": ok
	// "user@gke_prod": ok
	// "": invalid
	// "-prod": invalid
	// "arn:aws:eks:eu-west-1:1234:cluster/prod": invalid
}

// A Builder that can probe its clients turns on the health check: here a
// BuilderFuncs with a ProbeFunc, whose answers Probe records in the health of
// each cluster. ClientBuilder probes /readyz by itself.
func ExampleWithHealthCheck() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "up", Config: &rest.Config{Host: "https://up.example"}},
		clusterregistry.Cluster{Name: "down", Config: &rest.Config{Host: "https://down.example"}},
	)
	builder := clusterregistry.BuilderFuncs[string]{
		BuildFunc: hostBuilder.BuildFunc,
		ProbeFunc: func(_ context.Context, host string) error {
			if host == "https://down.example" {
				return errors.New("dial tcp: connection refused")
			}
			return nil
		},
	}
	syncer, err := clusterregistry.NewSyncer(source, builder,
		clusterregistry.WithHealthCheck(clusterregistry.HealthCheck{FailureThreshold: 1}))
	if err != nil {
		log.Fatal(err)
	}
	defer syncer.Close()
	_, _ = syncer.Sync(context.Background())
	_ = syncer.Probe(context.Background()) // Run probes on the interval; this is "check now"
	for _, name := range []string{"down", "up"} {
		h, _ := syncer.Registry().Health(name)
		fmt.Println(name, h.State, h.Err)
	}
	// Output:
	// down Unreachable dial tcp: connection refused
	// up Ready <nil>
}
