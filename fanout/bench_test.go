package fanout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fanout"
)

// BenchmarkPage measures one page load: a namespace list on each of 100
// clusters (each with a client and connections of its own, all served by
// local TLS test servers), with one black-holed cluster and, as the
// baseline in the same run, without it. The per-cluster deadline is 500ms,
// so the page with the dead cluster should cost about that, and not the
// minutes an unbounded client-go request waits.
func BenchmarkPage(b *testing.B) {
	const clusters, deadline = 100, 500 * time.Millisecond
	live, dead := clusterregistrytest.NewServer(b), clusterregistrytest.NewServer(b)
	source := clusterregistrytest.NewSource(dead.Cluster("dead"))
	for i := range clusters - 1 {
		source.Upsert(live.Cluster(fmt.Sprintf("c%03d", i)))
	}
	syncer := clusterregistrytest.StartSyncer(b, source, clusterregistry.ClientBuilder{SkipVersionCheck: true},
		clusterregistry.WithConcurrency(32))
	dead.BlackHole()
	list := func(ctx context.Context, _ string, c *clusterregistry.Client) (int, error) {
		ns, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(ns.Items), nil
	}
	page := func(b *testing.B, opts ...fanout.Option) {
		for b.Loop() {
			fanout.Collect(context.Background(), syncer.Registry(), list,
				append(opts, fanout.WithTimeout(deadline), fanout.WithConcurrency(clusters))...)
		}
	}
	b.Run("with-dead", func(b *testing.B) { page(b) })
	b.Run("without-dead", func(b *testing.B) {
		page(b, fanout.WithFilter(func(ci clusterregistry.ClusterInfo) bool { return ci.Name != "dead" }))
	})
}
