package localcluster_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// Start three clusters, use one, cut another off, and stop them all. (Not
// run by go test: it needs the server binaries and takes seconds.)
func Example() {
	ctx := context.Background()
	env, err := localcluster.Start(ctx, localcluster.Options{Clusters: 3, Progress: os.Stderr})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Stop() // kills every server and removes the temporary directory

	fmt.Println("kubeconfig with all three contexts:", env.KubeconfigPath())

	c1 := env.Cluster("cluster-1")
	cs, err := kubernetes.NewForConfig(c1.Config()) // through cluster-1's proxy, current token
	if err != nil {
		log.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.GitVersion)

	env.Cluster("cluster-2").BlackHole()    // its clients now time out
	_ = env.Cluster("cluster-3").Stop()     // killed; connections are refused
	_ = env.Cluster("cluster-3").Start(ctx) // back on the same port, same data
	_ = env.Cluster("cluster-2").Heal()     // answering again
	newToken, _ := c1.RotateToken(ctx)      // old token: 401 from now on
	fmt.Println(newToken == c1.Token(), c1.KubeconfigPath())
}
