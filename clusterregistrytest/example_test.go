package clusterregistrytest_test

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

// A FakeBuilder gives every cluster a fake clientset that starts with the
// objects seeded for it.
func ExampleFakeBuilder() {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("prod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"}})
	source := clusterregistrytest.NewSource(
		clusterregistrytest.NewDefaultCluster("prod"),
		clusterregistrytest.NewCluster("staging"),
	)
	syncer, _ := clusterregistry.NewSyncer(source, builder)
	ctx := context.Background()
	_, _ = syncer.Sync(ctx) // in a test: clusterregistrytest.StartSyncer(t, source, builder)

	for name, client := range syncer.Registry().Snapshot().All() {
		pods, _ := client.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		fmt.Println(name, client.ServerVersion().GitVersion, len(pods.Items), "pods")
	}
	// Output:
	// prod v1.37.0-fake 1 pods
	// staging v1.37.0-fake 0 pods
}

// A failing source leaves the last good state in place.
func ExampleSource_Fail() {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("prod"))
	syncer, _ := clusterregistry.NewSyncer(source, clusterregistrytest.NewFakeBuilder())
	ctx := context.Background()
	_, _ = syncer.Sync(ctx)

	source.Fail(errors.New("database unreachable"))
	source.Delete("prod")
	_, err := syncer.Sync(ctx)
	fmt.Println(err)
	fmt.Println(syncer.Registry().Snapshot().Names())
	// Output:
	// list clusters: database unreachable
	// [prod]
}

// A changed token makes the Syncer build the cluster a new client, and
// release the old one.
func ExampleWithToken() {
	builder := clusterregistrytest.NewFakeBuilder()
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("prod"))
	syncer, _ := clusterregistry.NewSyncer(source, builder)
	ctx := context.Background()
	_, _ = syncer.Sync(ctx)
	old := builder.Client("prod")

	source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("prod"), "rotated"))
	rep, _ := syncer.Sync(ctx)
	fmt.Println("updated", rep.Updated, "old released:", old.Released())
	// Output:
	// updated [prod] old released: true
}
