package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// These tests run real local clusters. The first run builds the servers
// (about 10 minutes on 2 cores); go test -short skips the tests instead.
func TestMain(m *testing.M) {
	// The servers are built (or found) before the tests start, outside the
	// test timeout; -short skips the tests that need them.
	needed := func() bool { return !testing.Short() || os.Getenv(browserTestEnv) == "1" }
	os.Exit(localcluster.RunTests(m, needed, clusterregistrytest.LeakOptions()...))
}

func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs local Kubernetes clusters; not with -short")
	}
}

// syncBuffer is a bytes.Buffer for writers in several goroutines.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemoRunsAllSteps runs the demo as `go run ./demo -exit-after-steps`
// does, and checks what it tells a newcomer.
func TestDemoRunsAllSteps(t *testing.T) {
	skipIfShort(t)
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build included
	defer cancel()
	begin := time.Now()
	err := run(ctx, options{addr: "127.0.0.1:0", exitAfterSteps: true, out: &out})
	t.Logf("demo output (%s):\n%s", time.Since(begin).Round(time.Millisecond), out.String())
	require.NoError(t, err)

	got := out.String()
	for _, want := range []string{
		"Dashboard: http://127.0.0.1:",
		"Registry: generation 1, 2 clusters, default cluster-1",
		"Step 1 of 4.", "Registry: generation 2, 3 clusters",
		"Step 2 of 4.", "A request with the old token now gets: 401 Unauthorized", "failed.",
		"Step 3 of 4.", `error: cluster "cluster-3": build timed out after 3s`,
		"Step 4 of 4.", `-> 404 {"status":404,"cluster":"cluster-2"`,
		"All steps done", "Stopped:",
	} {
		assert.Contains(t, got, want)
	}
	assert.Contains(t, got, " 0 failed.", "no request failed during the token rotation")
	if i := strings.Index(got, "Step 4 of 4."); i >= 0 {
		assert.NotContains(t, got[i:], "\n    cluster-2 ", "cluster-2 is gone from the last table")
	}
	assertNoCredentials(t, got)
}

// TestDemoStopsOnInterrupt cancels the demo while it serves, as Ctrl-C does.
func TestDemoStopsOnInterrupt(t *testing.T) {
	skipIfShort(t)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, options{addr: "127.0.0.1:0", out: &out}) }() // joined below

	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Step 1 of 4") },
		30*time.Minute, 50*time.Millisecond, "the demo reaches its first step")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the demo did not stop after its context ended")
	}
	assert.Contains(t, out.String(), "Stopped:")
}

// assertNoCredentials checks that no token of the local clusters was printed.
func assertNoCredentials(t *testing.T, s string) {
	t.Helper()
	for _, word := range strings.Fields(s) {
		if len(word) > 200 && strings.Count(word, ".") == 2 {
			t.Errorf("output holds what looks like a JWT: %.20s...", word)
		}
	}
	assert.NotContains(t, s, "eyJ", "no JWT in the output")
}
