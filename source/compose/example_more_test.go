package compose_test

import (
	"context"
	"fmt"
	"log"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/compose"
)

// Names keeps the clusters a service was told to serve (a flag, a config
// file) out of a larger source; the others are not listed, so the Syncer never
// builds a client for them.
func ExampleNames() {
	fleet := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod-eu", Config: &rest.Config{Host: "https://prod-eu.example"}},
		clusterregistry.Cluster{Name: "prod-us", Config: &rest.Config{Host: "https://prod-us.example"}},
		clusterregistry.Cluster{Name: "dev", Config: &rest.Config{Host: "https://dev.example"}},
	)
	src := compose.Filter(fleet, compose.Names("prod-eu", "dev"))

	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		fmt.Println(c.Name, c.Config.Host)
	}
	// Output:
	// dev https://dev.example
	// prod-eu https://prod-eu.example
}
