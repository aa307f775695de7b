// Package shard spreads the clusters of a source across the replicas of a
// service, so that each replica builds and serves only the clusters it owns,
// with exactly one owner per cluster through every handoff.
//
// The replicas agree through the hub cluster's API, with no consensus of
// their own: each renews one coordination.k8s.io Lease, watches its peers'
// Leases with one watch, and computes the owner of each cluster by weighted
// rendezvous hashing over the live replicas. Adding or removing a replica
// moves only the clusters it gains or held. A replica builds a cluster that
// has just become its own only after every live replica has said, in its
// Lease, that it has released every cluster it no longer owns; a replica
// that cannot renew its Lease stops serving before the Lease can expire (see
// Member for the guarantee and its clock assumptions). The hub's write load
// grows with the number of replicas, never with the number of clusters.
//
// A replica wires its Member into its Syncer twice, and runs both:
//
//	m, err := shard.New(shard.Config{
//		Client:    hub.CoordinationV1(), // nil: a single replica, no Lease
//		Namespace: "my-namespace",
//		Group:     "my-service",
//		// Identity defaults to $POD_NAME, then the host name.
//	})
//	syncer, err := clusterregistry.NewSyncer(m.Source(source), shard.Wrap(m, builder),
//		clusterregistry.WithDrainTimeout(2*time.Second))
//	go m.Run(ctx)
//	go syncer.Run(ctx)
//
// The Registry's EventAdded and EventRemoved of a handoff carry its reason
// (Event.Reason); Member.Status and an Observer say what the replica sees,
// owns and waits for. The RBAC a replica needs on the hub: get, list, watch,
// create, update and delete of leases.coordination.k8s.io in the namespace.
package shard
