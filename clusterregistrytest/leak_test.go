package clusterregistrytest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

// These tests are the experiments behind LeakOptions' documentation: the
// goroutines of the Servers started before IgnoreCurrent are ignored, and
// their per-connection goroutines end when the clients close their
// connections, so any goroutine found belongs to a client.

func TestReleasedClientsLeaveNothing(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	srv.Add(pod("shop", "web-1"))
	ignoreServer := goleak.IgnoreCurrent()
	ctx := context.Background()

	source := clusterregistrytest.NewSource(srv.Cluster("a"), srv.Cluster("b"))
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.ClientBuilder{})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- syncer.Run(runCtx) }()
	require.NoError(t, syncer.WaitForFirstSync(ctx))

	// Typed, dynamic and discovery requests, then a rebuild and a removal.
	client, err := syncer.Registry().Get("a")
	require.NoError(t, err)
	_, err = client.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	_, err = client.Dynamic().Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
		List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	_, err = client.Discovery().ServerGroups()
	require.NoError(t, err)
	source.Upsert(clusterregistrytest.WithToken(srv.Cluster("b"), srv.Token()+"-same-server"))
	source.Delete("a")
	clusterregistrytest.Sync(t, syncer)

	stop()
	require.NoError(t, <-done)
	clusterregistrytest.VerifyNone(t, ignoreServer)
}

func TestUnclosedClientOutsideTheRegistryIsALeak(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	ignoreServer := goleak.IgnoreCurrent()

	hc, cs := httpClientAndClientset(t, srv)
	_, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Error(t, goleak.Find(clusterregistrytest.LeakOptions(ignoreServer)...),
		"an idle connection keeps its read loop: LeakOptions must not hide it")

	utilnet.CloseIdleConnectionsFor(hc.Transport)
	clusterregistrytest.VerifyNone(t, ignoreServer)
}

func TestFakeClientsLeaveNothing(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("a", pod("shop", "web-1"))
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer, err := clusterregistry.NewSyncer(source, builder)
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)
	client, err := syncer.Registry().Get("a")
	require.NoError(t, err)

	w, err := client.Kubernetes().CoreV1().Pods("shop").Watch(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	w.Stop()
	clusterregistrytest.VerifyNone(t)
}
