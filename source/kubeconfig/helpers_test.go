package kubeconfig_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
)

const (
	interval = 500 * time.Millisecond
	settle   = 250 * time.Millisecond
)

// ctxSpec is one context of a generated kubeconfig: a cluster and a user of
// the same name, the user holding a token.
type ctxSpec struct {
	name, server string
}

// tokenOf is the token of the user of context name. Tests check that no
// error ever quotes it.
func tokenOf(name string) string { return "tok-" + name + "-s3cr3tvalue" }

// kubeconfigYAML writes a kubeconfig with one context, cluster and user per
// spec.
func kubeconfigYAML(current string, specs ...ctxSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\ncurrent-context: %q\nclusters:\n", current)
	for _, s := range specs {
		fmt.Fprintf(&b, "- name: %s\n  cluster:\n    server: %s\n", s.name, s.server)
	}
	b.WriteString("contexts:\n")
	for _, s := range specs {
		fmt.Fprintf(&b, "- name: %s\n  context:\n    cluster: %s\n    user: %s\n", s.name, s.name, s.name)
	}
	b.WriteString("users:\n")
	for _, s := range specs {
		fmt.Fprintf(&b, "- name: %s\n  user:\n    token: %s\n", s.name, tokenOf(s.name))
	}
	return b.String()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

// writeAtomically writes content to a temporary file and renames it over
// path, as careful writers do.
func writeAtomically(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, content)
	require.NoError(t, os.Rename(tmp, path))
}

// got is the part of a Cluster that tests compare.
type got struct {
	Name    string
	Host    string
	Default bool
	Err     string // "" or the FieldError's Location|Field
}

func summarize(t testing.TB, clusters []clusterregistry.Cluster) []got {
	t.Helper()
	out := make([]got, 0, len(clusters))
	for _, c := range clusters {
		g := got{Name: c.Name, Default: c.Default}
		if c.Config != nil && c.Err == nil {
			g.Host = c.Config.Host
		}
		if c.Err != nil {
			var fe *clusterregistry.FieldError
			require.True(t, errors.As(c.Err, &fe), "cluster %q: Err is %T, not a *FieldError: %v", c.Name, c.Err, c.Err)
			g.Err = fe.Location + "|" + fe.Field
		}
		out = append(out, g)
	}
	return out
}

// assertNoSecret checks that no error of clusters quotes a token or a
// marker that the test put into a credential.
func assertNoSecret(t testing.TB, clusters []clusterregistry.Cluster, err error, secrets ...string) {
	t.Helper()
	var msgs []string
	if err != nil {
		msgs = append(msgs, err.Error())
	}
	for _, c := range clusters {
		if c.Err != nil {
			msgs = append(msgs, c.Err.Error())
		}
	}
	for _, m := range msgs {
		assert.NotContains(t, m, "s3cr3t", "an error quotes a credential")
		for _, s := range secrets {
			assert.NotContains(t, m, s, "an error quotes a credential")
		}
	}
}

func names(clusters []clusterregistry.Cluster) []string {
	out := make([]string, 0, len(clusters))
	for _, c := range clusters {
		out = append(out, c.Name)
	}
	slices.Sort(out)
	return out
}

// watcher is a running Watch on a fake clock, counting its change calls.
type watcher struct {
	t       testing.TB
	src     clusterregistry.Watcher
	clk     *fakeclock.FakeClock
	changes atomic.Int64
	stop    context.CancelFunc
	done    chan error
	once    sync.Once
}

func startWatch(t testing.TB, src clusterregistry.Watcher, clk *fakeclock.FakeClock) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, src: src, clk: clk, stop: cancel, done: make(chan error, 1)}
	go func() { w.done <- src.Watch(ctx, func() { w.changes.Add(1) }) }()
	t.Cleanup(w.close)
	// The watch has started once it has called changed, as a Watcher must,
	// and its timer waits on the clock. Tests count the changes after that.
	require.Eventually(t, func() bool { return w.changes.Load() == 1 && clk.HasWaiters() }, 5*time.Second, time.Millisecond)
	w.changes.Store(0)
	return w
}

// poll moves the clock by one interval and waits until the watch has polled.
func (w *watcher) poll() {
	w.t.Helper()
	stepAndWait(w.t, w.clk)
}

// stepAndWait moves clk by one poll interval and waits until the watch on it
// has polled and called changed if it had to. The watch's timer fires at
// the step, which takes it off the clock's waiters, and is set again only
// once the poll is done.
func stepAndWait(t testing.TB, clk *fakeclock.FakeClock) {
	t.Helper()
	n := clk.Waiters()
	require.NotZero(t, n, "no watch waits on the clock")
	clk.Step(interval)
	require.Eventually(t, func() bool { return clk.Waiters() == n }, 5*time.Second, 100*time.Microsecond)
}

// close stops the watch and waits for Watch to return.
func (w *watcher) close() {
	w.once.Do(func() {
		w.stop()
		select {
		case err := <-w.done:
			assert.NoError(w.t, err)
		case <-time.After(5 * time.Second):
			w.t.Error("Watch did not return after its context ended")
		}
	})
}

func list(t testing.TB, src clusterregistry.ClusterSource) []clusterregistry.Cluster {
	t.Helper()
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	return clusters
}
