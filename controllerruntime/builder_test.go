package controllerruntime

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
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
