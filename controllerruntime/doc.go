// Package controllerruntime writes multi-cluster controllers with
// controller-runtime over a clusterregistry Registry.
//
// Three pieces:
//
//   - Builder makes each cluster's client, a *Cluster: a controller-runtime
//     cluster.Cluster (cache, cached client, scheme, REST mapper, its own HTTP
//     client), started and checked under the Syncer's build deadline, and
//     stopped on Release with every goroutine it started.
//   - Controller reconciles Requests (a cluster's name and an object's key)
//     from the watches of every cluster, through one work queue that is fair
//     across clusters. It is a manager.Runnable.
//   - SyncerRunnable runs the Syncer under the same manager.
//
// The reconciler reads and writes a cluster through Registry.Get: a Request
// for a cluster that went is dropped before it reaches the reconciler, and a
// replaced cluster's Get returns its new client with no gap.
package controllerruntime
