package shard

import (
	"fmt"
	"testing"

	"github.com/clusterregistry/clusterregistry/shard"
)

// BenchmarkOwnership10kClusters10Replicas measures what a replica computes
// when its view changes: the view of 10 replicas, then the owner of each of
// 10,000 clusters. (Package shard has no benchmark of its own; this one
// lives here so that this package does not edit it.)
func BenchmarkOwnership10kClusters10Replicas(b *testing.B) {
	names := make([]string, 10_000)
	for i := range names {
		names[i] = fmt.Sprintf("c-%05d", i)
	}
	replicas := make([]shard.Replica, 10)
	for i := range replicas {
		replicas[i] = shard.Replica{Identity: fmt.Sprintf("replica-%d", i), Weight: shard.DefaultWeight}
	}
	b.ReportAllocs()
	for b.Loop() {
		v := shard.NewView(replicas...)
		mine := 0
		for _, c := range names {
			if v.Owner(c) == "replica-0" {
				mine++
			}
		}
		if mine == 0 {
			b.Fatal("replica-0 owns nothing")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(names)), "ns/cluster")
}
