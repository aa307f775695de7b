package clusterregistry_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// TestConcurrentReadersDuringContinuousSyncs runs many readers (lookups,
// snapshots, leases) while syncs add, update and remove clusters without
// pause. Run it under -race. Besides the race detector it checks the
// invariants a reader relies on:
//   - a cluster that is only ever updated is never "not found" (the new
//     client is built before the old one goes);
//   - a leased client is never released while the lease is held;
//   - a snapshot is internally consistent.
func TestConcurrentReadersDuringContinuousSyncs(t *testing.T) {
	const (
		stable  = 5   // always listed, rotated on every sync
		churn   = 20  // come and go
		syncs   = 300 // number of syncs
		readers = 8
	)
	f := newFixture(t)
	listing := func(round int) []clusterregistry.Cluster {
		var cs []clusterregistry.Cluster
		for i := range stable {
			c := withToken(cluster(fmt.Sprintf("stable-%d", i), "https://stable"), fmt.Sprintf("t%d", round))
			c.Default = i == 0
			cs = append(cs, c)
		}
		for i := range churn {
			if (i+round)%3 != 0 {
				cs = append(cs, withToken(cluster(fmt.Sprintf("churn-%d", i), "https://churn"), fmt.Sprintf("t%d", round/2)))
			}
		}
		if round%5 == 0 {
			cs = append(cs, cluster("flaky", "fail://flaky"))
		}
		return cs
	}
	f.src.Set(listing(0)...)
	f.sync(t)

	var stop atomic.Bool
	var lookups, leases atomic.Int64
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				name := fmt.Sprintf("stable-%d", i%stable)
				c, err := f.reg.Get(name)
				if !assert.NoError(t, err, "a cluster that is only updated is never missing") {
					return
				}
				assert.Equal(t, name, c.name)
				lookups.Add(1)

				if _, err := f.reg.Default(); !assert.NoError(t, err) {
					return
				}
				_, _ = f.reg.Get(fmt.Sprintf("churn-%d", i%churn))

				switch (r + i) % 3 {
				case 0:
					lease, err := f.reg.Lease(name)
					if !assert.NoError(t, err) {
						return
					}
					held := lease.Client()
					for range 3 {
						assert.False(t, held.released.Load(), "a leased client is never released")
					}
					lease.Release()
					leases.Add(1)
				case 1:
					snap := f.reg.Snapshot()
					n := 0
					for name, c := range snap.All() {
						assert.Equal(t, name, c.name)
						n++
					}
					failing := 0
					for ci := range snap.Clusters() {
						if ci.Err != nil && !ci.Serving {
							failing++
						}
					}
					assert.LessOrEqual(t, n+failing, snap.Len())
					assert.Len(t, snap.Names(), snap.Len())
				case 2:
					_ = f.reg.Snapshot().Names()
					_ = f.reg.Snapshot().Err("flaky")
				}
			}
		})
	}

	for round := 1; round <= syncs; round++ {
		f.src.Set(listing(round)...)
		_, err := f.syncer.Sync(context.Background())
		require.NoError(t, err)
	}
	stop.Store(true)
	wg.Wait()

	assert.Positive(t, lookups.Load())
	assert.Positive(t, leases.Load())
	snap := f.reg.Snapshot()
	assert.Equal(t, uint64(syncs+1), snap.Generation(), "every sync changed something")
	// Every client built is either serving or released: none is lost.
	serving := 0
	for range snap.All() {
		serving++
	}
	require.Eventually(t, func() bool {
		return f.builder.releasedCount()+serving == len(f.builder.built)
	}, 10*time.Second, time.Millisecond)
}

// TestSharedExecConfigIsCopiedWithoutARace lists two clusters that share one
// *rest.Config whose exec provider carries cluster info, as a source that
// reuses a config may: their builds run in parallel and each copies it.
// client-go's rest.CopyConfig writes into the ExecProvider that a config
// shares with its copies, which -race reports here.
func TestSharedExecConfigIsCopiedWithoutARace(t *testing.T) {
	shared := &rest.Config{Host: "https://shared.example", ExecProvider: &clientcmdapi.ExecConfig{
		Command: "get-token", APIVersion: "client.authentication.k8s.io/v1",
		Config: &runtime.Unknown{Raw: []byte(`{"audience":"x"}`)},
	}}
	src := clusterregistry.NewMemorySource(
		clusterregistry.Cluster{Name: "a", Config: shared},
		clusterregistry.Cluster{Name: "b", Config: shared})
	b := newFakeBuilder()
	s, err := clusterregistry.NewSyncer[*fakeClient](src, b, clusterregistry.WithConcurrency(2))
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	for i := range 20 {
		rep, err := s.Sync(context.Background())
		require.NoError(t, err)
		require.Empty(t, rep.Failed)
		// A new token for both makes the next sync build both again.
		next := restconfig.Copy(shared)
		next.BearerToken = fmt.Sprint(i)
		src.Set(clusterregistry.Cluster{Name: "a", Config: next}, clusterregistry.Cluster{Name: "b", Config: next})
	}
	assert.Equal(t, []string{"a", "b"}, s.Registry().Snapshot().Names())
}
