package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	os.Exit(localcluster.RunTests(m, func() bool { return !testing.Short() }, clusterregistrytest.LeakOptions()...))
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
	var out bytes.Buffer // written under the group's lock; read once run has stopped every replica
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
