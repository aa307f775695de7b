package controllerruntime

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/clusterregistry/clusterregistry"
)

// SyncerRunnable hands a Syncer to a controller-runtime manager: the manager
// runs it on every replica (each keeps its own Registry), and its Start
// returns once the Syncer has released every client.
func SyncerRunnable[T any](s *clusterregistry.Syncer[T]) manager.Runnable {
	return syncerRunnable[T]{s}
}

type syncerRunnable[T any] struct{ s *clusterregistry.Syncer[T] }

// Start runs the Syncer until ctx ends.
func (r syncerRunnable[T]) Start(ctx context.Context) error { return r.s.Run(ctx) }

// NeedLeaderElection reports false: every replica keeps its own Registry.
func (syncerRunnable[T]) NeedLeaderElection() bool { return false }
