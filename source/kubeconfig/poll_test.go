package kubeconfig_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

// blockingRead is a file read that, once armed, stops in the next read (of
// one path, or of any) until released.
type blockingRead struct {
	armed   atomic.Pointer[string] // the path to stop at; "" for any
	entered chan struct{}          // receives when a read has stopped
	release chan struct{}          // closed to let it go on
	once    sync.Once
}

// newBlockingRead returns a read that is not armed. A test that arms it
// must make sure unblock runs (t.Cleanup) before it waits for the reader.
func newBlockingRead() *blockingRead {
	return &blockingRead{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (b *blockingRead) arm(path string) { b.armed.Store(&path) }

func (b *blockingRead) read(path string, limit int64) ([]byte, error) {
	if want := b.armed.Load(); want != nil && (*want == "" || *want == path) && b.armed.CompareAndSwap(want, nil) {
		b.entered <- struct{}{}
		<-b.release
	}
	return kubeconfig.ReadFile(path, limit)
}

func (b *blockingRead) unblock() { b.once.Do(func() { close(b.release) }) }

// waitEntered waits until a poll has stopped in a read.
func (b *blockingRead) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "no poll read the file")
	}
}

// listPromptly lists src and fails the test if List does not return within
// a few seconds, rather than hang.
func listPromptly(t *testing.T, src clusterregistry.ClusterSource) []clusterregistry.Cluster {
	t.Helper()
	type result struct {
		clusters []clusterregistry.Cluster
		err      error
	}
	done := make(chan result, 1) // the List may end after the test gave up on it
	go func() {
		clusters, err := src.List(context.Background())
		done <- result{clusters, err}
	}()
	select {
	case r := <-done:
		require.NoError(t, r.err)
		return r.clusters
	case <-time.After(5 * time.Second):
		require.FailNow(t, "List waited for the running poll")
		return nil
	}
}

// TestListDoesNotWaitForTheWatchsSlowRead stops the watch's poll in a read:
// List must return at once, with what the poll before found.
func TestListDoesNotWaitForTheWatchsSlowRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	w, reads := startWatchOf(t, path, clk)

	// The watch's poll sees a new size and stops in the read.
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"b", "https://b.example"}, ctxSpec{"c", "https://c.example"}))
	reads.arm("")
	n := clk.Waiters()
	clk.Step(interval)
	reads.waitEntered(t)

	assert.Equal(t, []string{"a"}, names(listPromptly(t, w.src)), "what the poll before found")

	// Let the poll finish; the new content then settles as usual.
	reads.unblock()
	require.Eventually(t, func() bool { return clk.Waiters() == n }, 5*time.Second, 100*time.Microsecond)
	assert.Zero(t, w.changes.Load(), "new content waits to settle")
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load())
	assert.Equal(t, []string{"b", "c"}, names(list(t, w.src)))
}

// TestListDuringAnotherListsPoll stops a List's poll after it has taken in
// the new content of one file of two: another List must return at once,
// with both files as the poll before found them.
func TestListDuringAnotherListsPoll(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	writeFile(t, one, kubeconfigYAML("", ctxSpec{"a", "https://a1.example"}))
	writeFile(t, two, kubeconfigYAML("", ctxSpec{"b", "https://b1.example"}))
	reads := newBlockingRead()
	t.Cleanup(reads.unblock)
	src, err := kubeconfig.New(env(map[string]string{"KUBECONFIG": one + string(os.PathListSeparator) + two}),
		kubeconfig.WithSettle(0), kubeconfig.WithReadFile(reads.read))
	require.NoError(t, err)
	hosts := func(clusters []clusterregistry.Cluster) []string {
		var out []string
		for _, c := range clusters {
			out = append(out, c.Config.Host)
		}
		return out
	}
	require.Equal(t, []string{"https://a1.example", "https://b1.example"}, hosts(list(t, src)))

	// The files are polled in order: the poll stops once it has taken one.
	writeFile(t, one, kubeconfigYAML("", ctxSpec{"a", "https://a2.example"}))
	writeFile(t, two, kubeconfigYAML("", ctxSpec{"b", "https://b2.example"}))
	reads.arm(two)
	slow := make(chan []string, 1)
	go func() {
		clusters, err := src.List(context.Background())
		assert.NoError(t, err)
		slow <- hosts(clusters)
	}()
	reads.waitEntered(t)

	assert.Equal(t, []string{"https://a1.example", "https://b1.example"}, hosts(listPromptly(t, src)),
		"the poll before, whole")
	reads.unblock()
	assert.Equal(t, []string{"https://a2.example", "https://b2.example"}, <-slow, "the slow List's own poll")
	assert.Equal(t, []string{"https://a2.example", "https://b2.example"}, hosts(list(t, src)))
}

// startWatchOf lists and watches a Source of the file at path, whose reads
// can be stopped.
func startWatchOf(t *testing.T, path string, clk *fakeclock.FakeClock) (*watcher, *blockingRead) {
	t.Helper()
	reads := newBlockingRead()
	src, err := kubeconfig.New(kubeconfig.WithPath(path), kubeconfig.WithClock(clk),
		kubeconfig.WithPollInterval(interval), kubeconfig.WithSettle(settle),
		kubeconfig.WithReadFile(reads.read))
	require.NoError(t, err)
	list(t, src) // as a Syncer does before it watches
	w := startWatch(t, src, clk)
	// Cleanups run last first: a read stopped by a failed test is let go
	// before the watch is stopped and waited for.
	t.Cleanup(reads.unblock)
	return w, reads
}

func TestWatchCallsChangedOnceWhenItStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	src, clk := newFileSource(t, path)
	list(t, src) // as a Syncer does before it watches
	ctx, cancel := context.WithCancel(context.Background())
	var changes atomic.Int64
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func() { changes.Add(1) }) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()

	require.Eventually(t, func() bool { return changes.Load() == 1 && clk.HasWaiters() }, 5*time.Second, time.Millisecond)
	stepAndWait(t, clk)
	stepAndWait(t, clk)
	assert.EqualValues(t, 1, changes.Load(), "nothing changed after the start")
}

func TestDirListDoesNotWaitForTheWatchsSlowRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	reads := newBlockingRead()
	d, clk := newDir(t, dir, kubeconfig.WithReadFile(reads.read))
	require.Equal(t, []string{"a"}, names(list(t, d)))
	w := startWatch(t, d, clk)
	t.Cleanup(reads.unblock) // after startWatch: runs before the watch is waited for

	writeFile(t, filepath.Join(dir, "b"), kubeconfigYAML("", ctxSpec{"b", "https://b.example"}))
	reads.arm("")
	n := clk.Waiters()
	clk.Step(interval)
	reads.waitEntered(t)

	assert.Equal(t, []string{"a"}, names(listPromptly(t, d)), "what the poll before found")
	reads.unblock()
	require.Eventually(t, func() bool { return clk.Waiters() == n }, 5*time.Second, 100*time.Microsecond)
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load())
	assert.Equal(t, []string{"a", "b"}, names(list(t, d)))
}
