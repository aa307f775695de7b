package fleet_test

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/fleet"
)

// A Fleet runs one worker per cluster: here, one that reports its cluster.
func ExampleFleet() {
	source := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "eu", Config: &rest.Config{Host: "https://eu.example.com"}},
		clusterregistry.Cluster{Name: "us", Config: &rest.Config{Host: "https://us.example.com"}})
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.BuilderFuncs[*string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (*string, error) { return &c.Name, nil },
	})
	if err != nil {
		panic(err)
	}
	defer syncer.Close()
	if rep, err := syncer.Sync(context.Background()); err != nil || len(rep.Failed) > 0 {
		panic(fmt.Sprint(err, rep.Failed))
	}

	seen := make(chan string, 2)
	f, err := fleet.New(syncer.Registry(), func(ctx context.Context, cluster string, client *string) {
		seen <- cluster
		<-ctx.Done()
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started, _ := f.Reconcile(ctx)
	first, second := <-seen, <-seen
	fmt.Println(started, first != second)
	cancel()
	// Start (or a Reconcile) stops workers whose cluster went; here ctx
	// has ended, so a Start returns at once, after stopping every worker.
	fmt.Println(f.Start(ctx), f.Workers())
	// Output:
	// [eu us] true
	// <nil> []
}
