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

	"github.com/clusterregistry/clusterregistry"
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
					for range snap.Errors() {
						failing++
					}
					assert.LessOrEqual(t, n+failing, snap.Len())
					assert.Len(t, snap.Names(), snap.Len())
				case 2:
					_ = f.reg.Names()
					_ = f.reg.Err("flaky")
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
