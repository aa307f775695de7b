// Package fanout runs one function on every cluster of a
// clusterregistry.Registry at once, the commonest page of a multi-cluster
// dashboard: the same question (pods, nodes, versions) asked of every
// cluster, the answers shown together.
//
// Each yields every cluster's Result as it comes; Collect waits for all of
// them. Both take the Registry's Snapshot when they start, call the function
// for each cluster it selects (WithFilter, WithNames, WithSelector), at most
// WithConcurrency at once, each under a deadline of its own (WithTimeout),
// and hold a Lease of the cluster's client for the length of the call, so
// that a sync which replaces or removes the cluster meanwhile does not
// release the client underneath it.
//
// One cluster never holds the others, nor the caller, past its deadline: at
// the deadline the call's context is cancelled and its Result is an error
// wrapping context.DeadlineExceeded that names the cluster. A function that
// honours its context returns soon after. One that ignores it is abandoned:
// the fan-out goes on without it, and its goroutine ends, and releases its
// Lease, only when the function finally returns. Cancelling the caller's
// context ends the fan-out the same way: every call's context is cancelled,
// clusters not started yet get the context's error, and Each and Collect
// return without waiting for any call.
//
// A page of pod counts:
//
//	results := fanout.Collect(ctx, syncer.Registry(),
//		func(ctx context.Context, name string, c *clusterregistry.Client) (int, error) {
//			pods, err := c.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
//			if err != nil {
//				return 0, err
//			}
//			return len(pods.Items), nil
//		}, fanout.WithTimeout(3*time.Second))
//	for _, r := range results {
//		fmt.Println(r.Name, r.Value, r.Err)
//	}
package fanout
