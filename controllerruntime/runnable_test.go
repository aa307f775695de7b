package controllerruntime_test

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/clusterregistry/clusterregistry/controllerruntime"
	"github.com/clusterregistry/clusterregistry/shard"
)

// A Member under a manager runs on every replica: it writes its Lease while
// the manager runs and deletes it when the manager stops.
func TestMemberRunnableRunsOnEveryReplicaAndDeletesItsLease(t *testing.T) {
	hub := fake.NewClientset()
	m, err := shard.New(shard.Config{Client: hub.CoordinationV1(), Namespace: "ns", Group: "g", Identity: "replica-a"})
	if err != nil {
		t.Fatal(err)
	}
	r := controllerruntime.MemberRunnable(m)
	if le, ok := r.(manager.LeaderElectionRunnable); !ok || le.NeedLeaderElection() {
		t.Fatal("MemberRunnable must run on every replica, not only the leader")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	leases := hub.CoordinationV1().Leases("ns")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := leases.Get(context.Background(), "g-replica-a", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Member wrote no Lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return after the manager stopped")
	}
	if _, err := leases.Get(context.Background(), "g-replica-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Lease after Start returned: %v, want not found", err)
	}
}
