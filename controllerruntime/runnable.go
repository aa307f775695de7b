package controllerruntime

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
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

// MemberRunnable hands a shard Member to a controller-runtime manager: it
// runs on every replica (not only the leader), takes part in the group until
// the manager stops, and then releases and deletes its Lease. With it, give
// the Syncer m.Source(source) and shard.Wrap(m, Builder), and the Controller
// WithLeaderElection(false): each replica reconciles the clusters it owns.
func MemberRunnable(m *shard.Member) manager.Runnable { return memberRunnable{m} }

type memberRunnable struct{ m *shard.Member }

// Start runs the Member until ctx ends.
func (r memberRunnable) Start(ctx context.Context) error { return r.m.Run(ctx) }

// NeedLeaderElection reports false: every replica is a member of the group.
func (memberRunnable) NeedLeaderElection() bool { return false }
