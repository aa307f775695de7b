package clusterregistrytest_test

import (
	"fmt"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

// NewCluster and NewDefaultCluster describe clusters for a test in one line:
// a name, an address nothing answers at, and a bearer token, for a
// FakeBuilder (which never dials) or a Source.
func ExampleNewCluster() {
	prod := clusterregistrytest.NewDefaultCluster("prod")
	dev := clusterregistrytest.NewCluster("dev")
	source := clusterregistrytest.NewSource(prod, dev)

	fmt.Println(prod.Name, prod.Default, prod.Config.Host)
	fmt.Println(dev.Name, dev.Default, dev.Config.Host)
	_ = source // then: syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder())
	// Output:
	// prod true https://prod.cluster.test
	// dev false https://dev.cluster.test
}
