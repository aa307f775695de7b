package httpcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fanout"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

// An overview endpoint: the namespace count of every cluster, each under a
// 3-second deadline, with the clusters that fail beside those that answer.
func ExampleFanOutHandler() {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Fail("lab", errors.New("connection refused"))
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("prod"), clusterregistrytest.NewCluster("lab"))
	syncer, _ := clusterregistry.NewSyncer(source, builder)
	defer syncer.Close()
	_, _ = syncer.Sync(context.Background())

	countNamespaces := func(ctx context.Context, _ string, c *clusterregistrytest.FakeClient) (int, error) {
		list, err := c.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(list.Items), nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/overview", httpcluster.FanOutHandler(syncer.Registry(), countNamespaces, fanout.WithTimeout(3*time.Second)))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/overview", nil))
	var list httpcluster.FanOutList[int]
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	fmt.Println(rec.Code, "failed:", list.Failed)
	for _, c := range list.Clusters {
		if c.Error != "" {
			fmt.Println(c.Name, "error:", c.Error)
			continue
		}
		fmt.Println(c.Name, "namespaces:", *c.Value)
	}
	// Output:
	// 200 failed: 1
	// lab error: cluster "lab": connection refused
	// prod namespaces: 0
}
