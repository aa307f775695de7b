package clusterregistrytest

import (
	"context"
	"testing"
	"time"

	"github.com/clusterregistry/clusterregistry"
)

// StopTimeout bounds how long StartSyncer's cleanup waits for Run to return.
// Run waits for leased clients up to the Syncer's drain timeout, so a test
// that leaves a lease unreleased finds out here.
var StopTimeout = 30 * time.Second

// StartSyncer makes a Syncer over source and builder, runs it in a goroutine
// and waits for its first sync; it fails the test at once if any of that
// fails. The test's cleanup stops the Syncer and waits for Run to return, so
// that every client is released before the next cleanup (such as a leak
// check or FakeBuilder.CheckReleased) runs: register those before calling
// StartSyncer, since cleanups run last-in first-out.
//
// A source that is a Watcher (Source, MemorySource) triggers a sync on each
// change; call Sync to wait for one.
func StartSyncer[T any](t testing.TB, source clusterregistry.ClusterSource, builder clusterregistry.Builder[T], opts ...clusterregistry.Option) *clusterregistry.Syncer[T] {
	t.Helper()
	s, err := clusterregistry.NewSyncer(source, builder, opts...)
	if err != nil {
		t.Fatalf("clusterregistrytest: NewSyncer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Run's goroutine is joined by the cleanup below.
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("clusterregistrytest: Syncer.Run: %v", err)
			}
		case <-time.After(StopTimeout):
			t.Errorf("clusterregistrytest: Syncer.Run did not return %v after its context ended: a lease not released?", StopTimeout)
		}
	})
	if err := s.WaitForFirstSync(ctx); err != nil {
		t.Fatalf("clusterregistrytest: first sync: %v", err)
	}
	return s
}

// Sync runs one sync of s now (after any sync already running) and returns
// its report; it fails the test at once if the sync returns an error.
// Errors of single clusters are not errors of the sync: see the report's
// Failed and the Registry.
func Sync[T any](t testing.TB, s *clusterregistry.Syncer[T]) clusterregistry.SyncReport {
	t.Helper()
	rep, err := s.Sync(context.Background())
	if err != nil {
		t.Fatalf("clusterregistrytest: Sync: %v", err)
	}
	return rep
}
