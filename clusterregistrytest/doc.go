// Package clusterregistrytest helps test services built on clusterregistry,
// with no real cluster:
//
//   - Source: an in-memory ClusterSource (a MemorySource) that can also fail
//     or hang on demand; NewCluster, NewDefaultCluster and WithToken make
//     the cluster descriptions to put in it.
//   - FakeBuilder: a Builder that hands out client-go fake clientsets
//     (k8s.io/client-go/kubernetes/fake), one per build, seeded per cluster,
//     and checks that the Syncer released every one exactly once.
//   - Server: a local HTTPS API server (httptest) serving /version,
//     discovery, namespaces and pods, that can be made slow, failing (500,
//     401) or silent, for tests of the real ClientBuilder.
//   - StartSyncer and Sync: run a Syncer for the length of a test.
//   - LeakOptions, VerifyTestMain and VerifyNone: goleak with only what
//     outlives a test legitimately ignored.
//
// A test of a multi-cluster handler:
//
//	func TestPodCount(t *testing.T) {
//		builder := clusterregistrytest.NewFakeBuilder()
//		builder.Seed("prod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"}})
//		source := clusterregistrytest.NewSource(clusterregistrytest.NewDefaultCluster("prod"))
//		syncer := clusterregistrytest.StartSyncer(t, source, builder)
//
//		handler := newHandler(syncer.Registry()) // the service's code
//		...
//		source.Delete("prod")
//		clusterregistrytest.Sync(t, syncer)
//		...
//	}
//
// The client type of a FakeBuilder is *FakeClient, which has the methods of
// *clusterregistry.Client that need no network (Name, Config, Kubernetes,
// ServerVersion). Code that should run against both takes an interface of
// those methods, or is generic over the client type.
package clusterregistrytest
