package kubeconfig_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
)

// hostBuilder builds a "client" that is the cluster's host: it needs no
// server.
var hostBuilder = clusterregistry.BuilderFuncs[string]{
	BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
}

// runSyncer runs a Syncer over src until the test ends. Its own clock never
// moves, so only the source's watch makes it sync after the first time.
func runSyncer(t *testing.T, src clusterregistry.ClusterSource) *clusterregistry.Registry[string] {
	t.Helper()
	s, err := clusterregistry.NewSyncer(src, hostBuilder,
		clusterregistry.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	require.NoError(t, s.WaitForFirstSync(ctx))
	return s.Registry()
}

func waitForHost(t *testing.T, reg *clusterregistry.Registry[string], name, host string) {
	t.Helper()
	require.Eventually(t, func() bool {
		h, err := reg.Get(name)
		return err == nil && h == host
	}, 5*time.Second, time.Millisecond, "cluster %q never got host %q", name, host)
}

func TestSyncerFollowsFileEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}))
	src, clk := newFileSource(t, path)
	reg := runSyncer(t, src)
	h, err := reg.Default()
	require.NoError(t, err)
	assert.Equal(t, "https://a.example", h)
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond)

	// Edit: add a cluster, change one.
	writeFile(t, path, kubeconfigYAML("b", ctxSpec{"a", "https://a2.example"}, ctxSpec{"b", "https://b.example"}))
	stepAndWait(t, clk)
	stepAndWait(t, clk)
	waitForHost(t, reg, "a", "https://a2.example")
	waitForHost(t, reg, "b", "https://b.example")
	name, err := reg.Snapshot().DefaultName()
	require.NoError(t, err)
	assert.Equal(t, "b", name)

	// Broken: the clients stay, with the error beside them.
	writeFile(t, path, "contexts: [")
	stepAndWait(t, clk)
	stepAndWait(t, clk)
	require.Eventually(t, func() bool { return reg.Snapshot().Err("a") != nil }, 5*time.Second, time.Millisecond)
	for _, n := range []string{"a", "b"} {
		var fe *clusterregistry.FieldError
		require.ErrorAs(t, reg.Snapshot().Err(n), &fe)
		assert.Equal(t, path, fe.Location)
		h, err := reg.Get(n)
		require.NoError(t, err, "the last good client stays in service")
		assert.NotEmpty(t, h)
	}

	// Fixed, with one cluster fewer.
	writeFile(t, path, kubeconfigYAML("b", ctxSpec{"b", "https://b.example"}))
	stepAndWait(t, clk)
	stepAndWait(t, clk)
	require.Eventually(t, func() bool { return len(reg.Snapshot().Names()) == 1 }, 5*time.Second, time.Millisecond)
	assert.NoError(t, reg.Snapshot().Err("b"))
	_, err = reg.Get("a")
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
}

func TestSyncerFollowsADirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	d, clk := newDir(t, dir)
	reg := runSyncer(t, d)
	require.Equal(t, []string{"a"}, reg.Snapshot().Names())
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond)

	writeAtomically(t, filepath.Join(dir, "b"), kubeconfigYAML("", ctxSpec{"b", "https://b.example"}))
	stepAndWait(t, clk)
	stepAndWait(t, clk)
	waitForHost(t, reg, "b", "https://b.example")

	require.NoError(t, os.Remove(filepath.Join(dir, "a")))
	stepAndWait(t, clk)
	stepAndWait(t, clk)
	require.Eventually(t, func() bool { return len(reg.Snapshot().Names()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{"b"}, reg.Snapshot().Names())
}

// TestNonAtomicRewrites rewrites a kubeconfig in place (truncate, then write
// in pieces) many times while a Syncer runs and readers list the source and
// read the Registry. No reader may ever miss a cluster.
func TestNonAtomicRewrites(t *testing.T) {
	const rewrites = 150
	clusterNames := []string{"alpha", "bravo", "charlie", "delta"}
	version := func(v int) string {
		specs := make([]ctxSpec, len(clusterNames))
		for i, n := range clusterNames {
			specs[i] = ctxSpec{n, fmt.Sprintf("https://%s.v%d.example", n, v)}
		}
		return kubeconfigYAML("alpha", specs...)
	}

	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, version(0))
	src, clk := newFileSource(t, path)
	reg := runSyncer(t, src)
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond)

	var (
		failures atomic.Int64
		firstMu  sync.Mutex
		first    error
	)
	fail := func(err error) {
		if failures.Add(1) == 1 {
			firstMu.Lock()
			first = err
			firstMu.Unlock()
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for ctx.Err() == nil {
				if r%2 == 0 {
					clusters, err := src.List(ctx)
					if err != nil {
						if ctx.Err() == nil {
							fail(err)
						}
						continue
					}
					if got := names(clusters); !slices.Equal(got, clusterNames) {
						fail(fmt.Errorf("List returned %v", got))
					}
					for _, c := range clusters {
						if c.Err != nil || c.Config == nil {
							fail(fmt.Errorf("cluster %q: %v", c.Name, c.Err))
						}
					}
				} else {
					for _, n := range clusterNames {
						if _, err := reg.Get(n); err != nil {
							fail(err)
						}
						if err := reg.Snapshot().Err(n); err != nil {
							fail(err)
						}
					}
				}
				runtime.Gosched()
			}
		}()
	}

	for v := 1; v <= rewrites; v++ {
		data := []byte(version(v))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		require.NoError(t, err)
		// Pieces cut at line ends make prefixes that are valid kubeconfigs
		// with fewer contexts; odd sizes make broken ones.
		for off := 0; off < len(data); {
			n := min(len(data)-off, 17+(v*7+off)%40)
			_, err := f.Write(data[off : off+n])
			require.NoError(t, err)
			off += n
			runtime.Gosched()
		}
		require.NoError(t, f.Close())
		stepAndWait(t, clk)
		stepAndWait(t, clk)
	}
	waitForHost(t, reg, "delta", fmt.Sprintf("https://delta.v%d.example", rewrites))
	stop()
	readers.Wait()

	firstMu.Lock()
	defer firstMu.Unlock()
	assert.Zero(t, failures.Load(), "first failure: %v", first)
	for _, n := range clusterNames {
		h, err := reg.Get(n)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("https://%s.v%d.example", n, rewrites), h)
	}
	assert.NoError(t, reg.Snapshot().SourceErr())
}
