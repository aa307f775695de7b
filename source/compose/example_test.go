package compose_test

import (
	"context"
	"fmt"
	"log"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/compose"
)

func Example() {
	local := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "dev", Config: &rest.Config{Host: "https://dev.example"}, Labels: map[string]string{"env": "dev"}},
	)
	fleet := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "prod", Config: &rest.Config{Host: "https://prod.example"}, Labels: map[string]string{"env": "prod"}},
		clusterregistry.Cluster{Name: "dev", Config: &rest.Config{Host: "https://dev2.example"}, Labels: map[string]string{"env": "dev"}},
	)
	env, err := labels.Parse("env in (dev, prod)")
	if err != nil {
		log.Fatal(err)
	}
	src := compose.Filter(compose.Merge(local, fleet), compose.Selector(env))

	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		if c.Err != nil {
			fmt.Println(c.Name, "error:", c.Err)
			continue
		}
		fmt.Println(c.Name, c.Config.Host)
	}
	_, watches := src.(clusterregistry.Watcher)
	fmt.Println("watcher:", watches)
	// Output:
	// dev error: source 0: field name: cluster "dev" is also defined by source 1
	// prod https://prod.example
	// watcher: true
}
