// Package httpcluster connects a clusterregistry.Registry to net/http: a
// middleware that picks the cluster of each request and leases its client
// for the length of the request, a handler that lists the clusters as JSON,
// and FanOutHandler, which asks every cluster the same thing at once
// (package fanout) and serves the answers and the per-cluster errors side by
// side, so that a cluster that is down shows as down without holding the
// page.
//
// The middleware reads the cluster's name from a header (X-Cluster-Name),
// then from a query parameter (cluster), and uses the default cluster when
// neither is given; both names can be changed, and a ServeMux path wildcard
// can be added (WithPathValue). It leases the client (Registry.Lease or
// LeaseDefault), so that a sync which replaces or removes the cluster while
// the request runs does not release the client underneath it, and releases
// the lease when the handler returns. The handler finds the client with
// Client[T], and the cluster's name with ClusterName.
//
// An unknown cluster is answered 404 Not Found, a cluster that has no working
// client (a *clusterregistry.ClusterError), a missing default or a stopped
// Syncer 503 Service Unavailable, each with a JSON body such as
//
//	{"status":404,"cluster":"dev","error":"cluster \"dev\": cluster not found"}
//
// that names the cluster and never holds a credential (WithErrorHandler
// writes another body).
//
// A service:
//
//	mw := httpcluster.New(syncer.Registry())
//	mux := http.NewServeMux()
//	mux.Handle("GET /clusters", httpcluster.ListHandler(syncer.Registry()))
//	mux.Handle("GET /pods", mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		client, _ := httpcluster.Client[*clusterregistry.Client](r.Context())
//		pods, err := client.Kubernetes().CoreV1().Pods("").List(r.Context(), metav1.ListOptions{})
//		...
//	})))
//
// # Routers
//
// Handler has the func(http.Handler) http.Handler shape that most routers
// take as it is: chi's Router.Use(mw.Handler), echo's
// e.Use(echo.WrapMiddleware(mw.Handler)). With gin, call it from a
// gin.HandlerFunc whose next handler sets c.Request and calls c.Next, and
// abort when it was not called; the examples module shows this.
package httpcluster
