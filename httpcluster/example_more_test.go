package httpcluster_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/clusterregistry/clusterregistry/httpcluster"
)

// A handler behind the Middleware reads the request's cluster and client from
// its context. Its unit test needs no Registry: NewContext puts a name and a
// client (here a fake of the handler's own type) where the Middleware would.
func ExampleNewContext() {
	type fakeClient struct{ host string }
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := httpcluster.ClusterName(r.Context())
		client, ok := httpcluster.Client[*fakeClient](r.Context())
		if !ok {
			http.Error(w, "no client", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s at %s", name, client.host)
	})

	req := httptest.NewRequest(http.MethodGet, "/clusters/prod/pods", nil)
	req = req.WithContext(httpcluster.NewContext(req.Context(), "prod", &fakeClient{host: "https://prod.example"}))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())
	// Output:
	// 200 prod at https://prod.example
}
