package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	os.Exit(localcluster.RunTests(m, func() bool { return !testing.Short() }, clusterregistrytest.LeakOptions()...))
}

// syncBuffer is a bytes.Buffer safe for the replicas' concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReplicasOnLocalClusters runs the example against four local clusters:
// the three replicas share them, replica-b's clusters move to the others
// when it stops and come back when it starts, each move with its reason.
func TestReplicasOnLocalClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs local Kubernetes clusters; not with -short")
	}
	env := localcluster.StartT(t, 4)
	hub, err := kubernetes.NewForConfig(env.Cluster("cluster-1").AdminConfig())
	require.NoError(t, err)
	var out syncBuffer
	require.NoError(t, run(context.Background(), &out, hub, env.KubeconfigPath()))
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		"three replicas: replica-a [cluster-3], replica-b [cluster-1 cluster-4], replica-c [cluster-2]",
		"replica-b back: replica-a [cluster-3], replica-b [cluster-1 cluster-4], replica-c [cluster-2]",
		"moved here from replica-b ([replica-b] left)",
		"moved to replica-b ([replica-b] joined)",
	} {
		require.True(t, strings.Contains(got, want), "output lacks %q", want)
	}
}
