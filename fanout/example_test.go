package fanout_test

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fanout"
)

// Count the pods of every cluster at once, each cluster under a deadline of
// its own; a cluster with no working client reports its error beside the
// others' answers.
func Example() {
	builder := clusterregistrytest.NewFakeBuilder()
	seedPods(builder, "prod", 3)
	seedPods(builder, "staging", 1)
	builder.Fail("lab", fmt.Errorf("connection refused"))
	source := clusterregistrytest.NewSource(
		clusterregistrytest.NewCluster("prod"),
		clusterregistrytest.NewCluster("staging"),
		clusterregistrytest.NewCluster("lab"),
	)
	syncer, _ := clusterregistry.NewSyncer(source, builder)
	defer syncer.Close()
	_, _ = syncer.Sync(context.Background())

	countPods := func(ctx context.Context, _ string, c *clusterregistrytest.FakeClient) (int, error) {
		pods, err := c.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(pods.Items), nil
	}
	for _, r := range fanout.Collect(context.Background(), syncer.Registry(), countPods, fanout.WithTimeout(3*time.Second)) {
		if r.Err != nil {
			fmt.Printf("%s: %v\n", r.Name, r.Err)
			continue
		}
		fmt.Printf("%s: %d pods\n", r.Name, r.Value)
	}
	// Output:
	// lab: cluster "lab": connection refused
	// prod: 3 pods
	// staging: 1 pods
}
