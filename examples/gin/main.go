// Command gin serves the clusters of your kubeconfig with the gin router,
// through httpcluster's standard net/http middleware unchanged:
//
//	cd examples && go run ./gin
//	curl 127.0.0.1:8081/clusters
//	curl 127.0.0.1:8081/api/pods?cluster=NAME     (or -H 'X-Cluster-Name: NAME'; none: the default)
//
// Any router that runs func(http.Handler) http.Handler middleware works the
// same way: chi takes it as it is (r.Use(mw.Handler)), echo through
// echo.WrapMiddleware(mw.Handler); routers_test.go shows all three.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/gin-gonic/gin"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/httpcluster"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	path := flag.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *path); err != nil {
		fmt.Fprintln(os.Stderr, "gin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, path string) error {
	var opts []kubeconfig.Option
	if path != "" {
		opts = append(opts, kubeconfig.WithPath(path))
	}
	source, err := kubeconfig.New(opts...)
	if err != nil {
		return err
	}
	syncer, err := clusterregistry.NewSyncer(source, clusterregistry.ClientBuilder{UserAgent: "clusterregistry-gin"})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	syncDone := make(chan error, 1)
	// The Syncer runs until the server has stopped, then releases every client.
	go func() { syncDone <- syncer.Run(runCtx) }()
	defer func() {
		cancel()
		<-syncDone
	}()

	gin.SetMode(gin.ReleaseMode)
	srv := &http.Server{Addr: addr, Handler: newRouter(syncer.Registry()), ReadHeaderTimeout: 10 * time.Second}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.ListenAndServe() }() // ends with Shutdown below
	fmt.Printf("Serving http://%s/clusters and /api/pods; Ctrl-C stops.\n", addr)
	select {
	case err := <-serveDone:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// kubeClient is what the handlers need of a cluster's client.
type kubeClient interface {
	Kubernetes() kubernetes.Interface
}

// newRouter returns the service's gin router over reg.
func newRouter[T kubeClient](reg *clusterregistry.Registry[T]) *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/clusters", gin.WrapH(httpcluster.ListHandler(reg)))

	api := r.Group("/api", fromHTTP(httpcluster.New(reg).Handler))
	api.GET("/pods", func(c *gin.Context) {
		ctx := c.Request.Context()
		client, _ := httpcluster.Client[T](ctx) // the middleware put it there
		name, _ := httpcluster.ClusterName(ctx)
		pods, err := client.Kubernetes().CoreV1().Pods(c.Query("namespace")).List(ctx, metav1.ListOptions{})
		if err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"cluster": name, "error": err.Error()})
			return
		}
		names := make([]string, 0, len(pods.Items))
		for _, p := range pods.Items {
			names = append(names, p.Namespace+"/"+p.Name)
		}
		c.JSON(http.StatusOK, gin.H{"cluster": name, "pods": names})
	})
	return r
}

// fromHTTP runs a net/http middleware as gin middleware: the rest of gin's
// chain runs inside it (so a lease it takes lasts until the handlers have
// returned), with the request it passes on. When it answers by itself (an
// unknown cluster, say), the chain is aborted.
func fromHTTP(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		called := false
		mw(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			called = true
			c.Request = r
			c.Next()
		})).ServeHTTP(c.Writer, c.Request)
		if !called {
			c.Abort()
		}
	}
}
