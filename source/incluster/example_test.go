package incluster_test

import (
	"context"
	"fmt"
	"log"

	"github.com/clusterregistry/clusterregistry/source/incluster"
)

func ExampleOptional() {
	// Outside a cluster, an optional in-cluster source lists nothing, so
	// the same program runs on a laptop with its other sources.
	src, err := incluster.New(incluster.Optional(), incluster.WithGetenv(func(string) string { return "" }))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(clusters))
	// Output: 0
}

func ExampleNew() {
	src, err := incluster.New(incluster.WithGetenv(func(string) string { return "" }))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(clusters[0].Name, clusters[0].Err)
	// Output: in-cluster in-cluster config: field env KUBERNETES_SERVICE_HOST: not set: not running in a Kubernetes cluster
}
