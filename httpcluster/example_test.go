package httpcluster_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

// The middleware picks the cluster from the X-Cluster-Name header or the
// cluster query parameter, and falls back on the default cluster.
func ExampleMiddleware_Handler() {
	// In a service: clusterregistry.NewSyncer(source, clusterregistry.ClientBuilder{})
	// and go syncer.Run(ctx). Here, fake clients stand in for clusters.
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("staging", pod("shop", "web-1"), pod("shop", "web-2"))
	source := clusterregistry.NewMemorySource(
		clusterregistrytest.NewDefaultCluster("prod"),
		clusterregistrytest.NewCluster("staging"),
	)
	syncer, err := clusterregistry.NewSyncer(source, builder)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = syncer.Sync(context.Background())

	pods := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, _ := httpcluster.Client[*clusterregistrytest.FakeClient](r.Context())
		name, _ := httpcluster.ClusterName(r.Context())
		list, err := client.Kubernetes().CoreV1().Pods("").List(r.Context(), metav1.ListOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "%s has %d pods\n", name, len(list.Items))
	})
	mux := http.NewServeMux()
	mux.Handle("GET /pods", httpcluster.New(syncer.Registry()).Handler(pods))

	for _, target := range []string{"/pods", "/pods?cluster=staging", "/pods?cluster=dev"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 prod has 0 pods
	// 200 staging has 2 pods
	// 404 {"status":404,"cluster":"dev","error":"cluster \"dev\": cluster not found"}
}

// ListHandler serves the Registry's current Snapshot as JSON.
func ExampleListHandler() {
	source := clusterregistry.NewMemorySource(clusterregistrytest.NewDefaultCluster("prod"))
	syncer, err := clusterregistry.NewSyncer(source, clusterregistrytest.NewFakeBuilder())
	if err != nil {
		log.Fatal(err)
	}
	_, _ = syncer.Sync(context.Background())

	list := httpcluster.Describe(syncer.Registry().Snapshot()) // what ListHandler serves
	for _, c := range list.Clusters {
		fmt.Println(c.Name, c.Default, c.ServerVersion, c.Generation)
	}
	// Output:
	// prod true v1.37.0-fake 1
}
