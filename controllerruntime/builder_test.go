package controllerruntime

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/controllerruntime/internal/fakeapi"
)

func TestBuilderFailsAnUnreachableClusterWithinItsDeadline(t *testing.T) {
	s := fakeapi.New()
	defer s.Close()
	s.BlackHole()
	defer s.Heal()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	cl, err := Builder{}.Build(ctx, clusterregistry.Cluster{Name: "silent", Config: s.Config()})
	assert.Nil(t, cl)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "bounded by the deadline, not by the server") // generous
	assert.Contains(t, err.Error(), `cluster "silent"`)
	assert.NotContains(t, err.Error(), s.Config().BearerToken, "no credential in the error")
}

func TestBuilderRejectsAMissingConfig(t *testing.T) {
	_, err := Builder{}.Build(context.Background(), clusterregistry.Cluster{Name: "x"})
	assert.ErrorContains(t, err, `cluster "x"`)
}

func TestBuilderBuildsAStartedCluster(t *testing.T) {
	s := fakeapi.New()
	defer s.Close()
	s.Apply(configMap("one", "1"))
	cl, err := Builder{}.Build(context.Background(), clusterregistry.Cluster{Name: "a", Config: s.Config()})
	require.NoError(t, err)
	assert.Equal(t, "a", cl.Name())
	var cm corev1.ConfigMap
	// The cached client starts the ConfigMap informer on first use.
	require.NoError(t, cl.GetClient().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "one"}, &cm))
	assert.Equal(t, "1", cm.Data["v"])
	assert.Equal(t, 1, s.Watchers())
	Builder{}.Release(cl)
	assert.Eventually(t, func() bool { return s.Watchers() == 0 && s.Connections() == 0 }, wait, time.Millisecond)
}

// TestBuilderCyclesLeaveNothing builds, uses and releases a cluster a
// hundred times: afterwards the server has no connection and the process no
// more goroutines than before (goleak checks the rest in TestMain).
func TestBuilderCyclesLeaveNothing(t *testing.T) {
	s := fakeapi.New()
	defer s.Close()
	s.Apply(configMap("one", "1"))
	before := runtime.NumGoroutine()
	for range 100 {
		cl, err := Builder{}.Build(context.Background(), clusterregistry.Cluster{Name: "a", Config: s.Config()})
		require.NoError(t, err)
		var cm corev1.ConfigMap
		require.NoError(t, cl.GetClient().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "one"}, &cm))
		Builder{}.Release(cl)
	}
	assert.Eventually(t, func() bool { return s.Connections() == 0 && s.Watchers() == 0 }, wait, time.Millisecond)
	// +1: Eventually runs its condition in a goroutine of its own.
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+1 }, wait, 10*time.Millisecond,
		"goroutines: %d before, %d after", before, runtime.NumGoroutine())
	if t.Failed() {
		buf := make([]byte, 1<<20)
		t.Log(string(buf[:runtime.Stack(buf, true)]))
	}
}

// A read of a released Cluster's cache never waits for a sync that cannot
// come: one made after the release, and one that waited for an informer (its
// list black-holed) when the release came, both end with ErrReleased, naming
// the cluster. Before, they waited for their context's deadline: a reconcile
// that got the cluster just before it left held its worker, and every later
// request of that cluster name, for its whole timeout.
func TestReadsOfAReleasedClusterEndAtTheRelease(t *testing.T) {
	s := fakeapi.New()
	defer s.Close()
	s.Apply(configMap("one", "1"))
	key := client.ObjectKey{Namespace: "default", Name: "one"}

	t.Run("after the release", func(t *testing.T) {
		cl, err := Builder{}.Build(context.Background(), clusterregistry.Cluster{Name: "gone", Config: s.Config()})
		require.NoError(t, err)
		Builder{}.Release(cl)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = cl.GetClient().Get(ctx, key, &corev1.ConfigMap{})
		require.ErrorIs(t, err, ErrReleased)
		assert.ErrorContains(t, err, `cluster "gone": released`)
		require.ErrorIs(t, cl.GetCache().List(ctx, &corev1.ConfigMapList{}), ErrReleased)
		_, err = cl.GetCache().GetInformer(ctx, &corev1.ConfigMap{})
		require.ErrorIs(t, err, ErrReleased)
		assert.False(t, cl.GetCache().WaitForCacheSync(ctx))
		assert.NoError(t, ctx.Err(), "none waited for the deadline")
	})

	t.Run("waiting when the release comes", func(t *testing.T) {
		cl, err := Builder{}.Build(context.Background(), clusterregistry.Cluster{Name: "leaving", Config: s.Config()})
		require.NoError(t, err)
		// The kind's mapping is known, then the informer's list hangs.
		_, err = cl.GetRESTMapper().RESTMapping(schema.GroupKind{Kind: "ConfigMap"}, "v1")
		require.NoError(t, err)
		s.BlackHole()
		defer s.Heal()
		reads := make(chan error, 2)
		go func() { reads <- cl.GetClient().Get(context.Background(), key, &corev1.ConfigMap{}) }()
		go func() { reads <- cl.GetCache().List(context.Background(), &corev1.ConfigMapList{}) }()
		require.Eventually(t, func() bool {
			inf, err := cl.GetCache().GetInformer(context.Background(), &corev1.ConfigMap{}, cache.BlockUntilSynced(false))
			return err == nil && !inf.HasSynced()
		}, wait, time.Millisecond, "the informer exists and has not synced")
		select {
		case err := <-reads:
			t.Fatalf("a read returned before the release: %v", err)
		default:
		}
		Builder{}.Release(cl)
		for range 2 {
			select {
			case err := <-reads:
				require.ErrorIs(t, err, ErrReleased)
				assert.ErrorContains(t, err, `cluster "leaving"`)
			case <-time.After(wait):
				t.Fatal("a read still waits after the release")
			}
		}
	})
}
