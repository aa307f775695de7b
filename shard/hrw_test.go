package shard_test

import (
	"fmt"
	"hash/fnv"
	"math"
	"testing"

	"github.com/clusterregistry/clusterregistry/shard"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cluster-%05d", i)
	}
	return out
}

func replicas(n, weight int) []shard.Replica {
	out := make([]shard.Replica, n)
	for i := range out {
		out[i] = shard.Replica{Identity: fmt.Sprintf("replica-%d", i), Weight: weight}
	}
	return out
}

func counts(v shard.View, clusters []string) map[string]int {
	c := map[string]int{}
	for _, n := range clusters {
		c[v.Owner(n)]++
	}
	return c
}

func TestOwnershipIsBalanced(t *testing.T) {
	clusters := names(10000)
	for _, n := range []int{3, 5, 10} {
		v := shard.NewView(replicas(n, 100)...)
		even := float64(len(clusters)) / float64(n)
		for id, got := range counts(v, clusters) {
			if dev := (float64(got) - even) / even; dev > 0.15 || dev < -0.15 {
				t.Errorf("%d replicas: %s owns %d clusters, %.0f%% from even (%.0f)", n, id, got, 100*dev, even)
			}
		}
	}
}

func TestWeightsShareInProportion(t *testing.T) {
	rs := replicas(3, 100)
	rs[0].Weight = 200
	got := counts(shard.NewView(rs...), names(10000))
	// Expected: 5000, 2500, 2500.
	if got["replica-0"] < 4500 || got["replica-0"] > 5500 {
		t.Errorf("weight 200 of 400 owns %d of 10000, want about 5000", got["replica-0"])
	}
}

func TestAReplicaJoiningMovesOnlyItsShare(t *testing.T) {
	clusters := names(10000)
	three := shard.NewView(replicas(3, 100)...)
	four := shard.NewView(replicas(4, 100)...)
	moved := 0
	for _, n := range clusters {
		from, to := three.Owner(n), four.Owner(n)
		if from != to {
			moved++
			if to != "replica-3" {
				t.Fatalf("%s moved from %s to %s: only the new replica may gain clusters", n, from, to)
			}
		}
	}
	if f := float64(moved) / float64(len(clusters)); f < 0.2 || f > 0.3 {
		t.Errorf("a 4th replica took %.2f of the clusters, want about 0.25", f)
	}
}

func TestViewsAgreeWhateverTheOrder(t *testing.T) {
	rs := replicas(5, 100)
	a := shard.NewView(rs...)
	b := shard.NewView(rs[4], rs[2], rs[0], rs[3], rs[1], rs[2])
	if a.ID != b.ID {
		t.Fatalf("view IDs differ: %s, %s", a.ID, b.ID)
	}
	for _, n := range names(1000) {
		if a.Owner(n) != b.Owner(n) {
			t.Fatalf("%s: owners differ", n)
		}
	}
	if shard.NewView().Owner("x") != "" {
		t.Error("an empty view owns a cluster")
	}
	w := rs
	w[0].Weight = 50
	if shard.NewView(w...).ID == a.ID {
		t.Error("a weight change keeps the view's ID")
	}
}

// BenchmarkOwnership10kClusters10Replicas computes the owner of 10,000
// clusters among 10 replicas: the work of one listing's filter.
func BenchmarkOwnership10kClusters10Replicas(b *testing.B) {
	clusters := names(10000)
	v := shard.NewView(replicas(10, 100)...)
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range clusters {
			_ = v.Owner(n)
		}
	}
}

// BenchmarkOwnershipNaive10kClusters10Replicas is the baseline: the same
// weighted rendezvous hashing written the straightforward way, hashing the
// cluster's and the replica's names together with a hash.Hash per score.
func BenchmarkOwnershipNaive10kClusters10Replicas(b *testing.B) {
	clusters := names(10000)
	rs := replicas(10, 100)
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range clusters {
			best, bestScore := "", math.Inf(-1)
			for _, r := range rs {
				h := fnv.New64a()
				h.Write([]byte(n + "/" + r.Identity))
				u := (float64(h.Sum64()>>11) + 0.5) / (1 << 53)
				if score := -float64(r.Weight) / math.Log(u); score > bestScore {
					best, bestScore = r.Identity, score
				}
			}
			_ = best
		}
	}
}
