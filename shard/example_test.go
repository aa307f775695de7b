package shard_test

import (
	"context"
	"fmt"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/shard"
)

// A replica with no hub (Config.Client nil) owns every cluster and writes no
// Lease, so one program serves as one replica or as many.
func Example() {
	m, err := shard.New(shard.Config{Identity: "replica-0"})
	if err != nil {
		panic(err)
	}
	source := clusterregistry.NewMemorySource(
		clusterregistrytest.NewCluster("east"), clusterregistrytest.NewCluster("west"))
	syncer, err := clusterregistry.NewSyncer(m.Source(source), shard.Wrap[*clusterregistrytest.FakeClient](m, clusterregistrytest.NewFakeBuilder()))
	if err != nil {
		panic(err)
	}
	defer syncer.Close()
	if _, err := syncer.Sync(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(syncer.Registry().Snapshot().Names())
	// Output: [east west]
}

// Owners are the same on every replica that sees the same replicas.
func ExampleView_Owner() {
	v := shard.NewView(
		shard.Replica{Identity: "replica-a", Weight: 100},
		shard.Replica{Identity: "replica-b", Weight: 100},
		shard.Replica{Identity: "replica-c", Weight: 100},
	)
	for _, c := range []string{"cluster-1", "cluster-2", "cluster-3", "cluster-4"} {
		fmt.Println(c, v.Owner(c))
	}
	// Output:
	// cluster-1 replica-b
	// cluster-2 replica-c
	// cluster-3 replica-a
	// cluster-4 replica-b
}
