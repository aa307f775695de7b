// Package clusterregistry keeps one client per Kubernetes cluster for services
// that talk to many clusters at once: dashboards, multi-cluster controllers,
// fleet tools.
//
// A user starts from a few names: a ClusterSource (a package under source/,
// or MemorySource), NewSyncer with ClientBuilder (or a Builder of your own),
// Syncer.Run, and the Registry's Get, Lease and Snapshot. Everything else is
// an option (With...), a description (Cluster, ClusterInfo, Health, Event) or
// an error to match (ErrClusterNotFound, ErrNoDefaultCluster, ErrStopped,
// *ClusterError, *FieldError).
//
// Three parts work together:
//
//   - A ClusterSource lists the clusters that should exist: kubeconfig
//     files, Secrets in a hub cluster, a database, or your own (SourceFunc,
//     MemorySource). Sources that can tell when they changed are Watchers.
//   - A Syncer keeps a Registry in step with the source. It builds clients
//     for new and changed clusters only, in parallel and each under its own
//     deadline, with no lock held; it publishes the result with one pointer
//     store under the write lock; and it releases replaced clients once
//     nobody uses them.
//   - A Registry answers "give me the client for cluster X" from any number
//     of goroutines without ever waiting on I/O or on a lock: the state is
//     immutable, and Get, Default and Snapshot load it atomically. Lease
//     holds a client for long-lived uses.
//
// The client type is yours: a Builder makes it from a Cluster and releases
// it. ClientBuilder makes the ready bundle *Client (typed, dynamic and
// discovery clients over one shared *http.Client), whose requests have a
// timeout, can be counted per cluster (RequestObserver), and fail at once
// while the cluster is known to be unreachable (*UnreachableError). Package
// fanout asks every cluster at once, each under its own deadline.
//
// Failures stay local. A cluster whose build fails keeps its last good
// client, with a *ClusterError beside it, and is retried with exponential
// backoff; a source that cannot be listed leaves the whole last good state in
// place; one unreachable API server fails only its own build, after its
// timeout. No credential appears in an error or a log line. Every callback
// of yours (Builder, Prober, Observer) runs with no lock of the library held.
//
// A minimal service:
//
//	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.ClientBuilder{})
//	if err != nil { ... }
//	go syncer.Run(ctx)                // until ctx ends; then releases every client
//	_ = syncer.WaitForFirstSync(ctx)
//	client, err := syncer.Registry().Get("prod")
//	pods, err := client.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
package clusterregistry
