// Package localcluster runs real, local Kubernetes API servers for tests and
// demos: several independent clusters, each a kube-apiserver process over one
// shared etcd process (each cluster under its own etcd prefix), all on
// 127.0.0.1 with free ports, with faults on demand.
//
// There are no controllers, scheduler or kubelets: only what an API server
// does by itself works (objects are stored and served, RBAC and
// authentication apply; namespaces never finish terminating and pods never
// run).
//
// # Binaries
//
// EnsureBinaries builds etcd and kube-apiserver from the pinned modules in
// test/tools (about 10 minutes with a cold Go build cache on 2 cores) into
// BinDir, by default ${XDG_CACHE_HOME:-$HOME/.cache}/clusterregistry/bin, or
// $CLUSTERREGISTRY_BIN_DIR. Later calls reuse them. Start calls it when
// Options.Binaries is empty.
//
// # Lifecycle
//
// Start starts an Environment and blocks until every API server is ready;
// Environment.Stop ends it. StartT does both for a test (Stop runs in
// t.Cleanup), and StopAll, called from TestMain after m.Run, stops whatever a
// test left. The server processes also receive SIGKILL from the kernel when
// the process that started them dies, so none outlives a crashed or killed
// test binary.
//
// # Clients and faults
//
// Every cluster is reached through a Proxy of its own: Cluster.Config and the
// kubeconfig files point at it, so BlackHole, SetDelay and Heal act on every
// client of the cluster. Cluster.Stop and Cluster.Start kill and restart the
// API server on the same port over the same data.
//
// Clients authenticate with ServiceAccount tokens bound to cluster-admin.
// IssueToken makes a new one while the others stay valid; RevokeToken makes
// one fail with 401 Unauthorized, without a restart. AdminConfig is the
// harness's own credential, which no rotation touches and which bypasses the
// proxy.
package localcluster
