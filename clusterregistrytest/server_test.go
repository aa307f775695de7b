package clusterregistrytest_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestServerWithClientBuilder(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	srv.Add(pod("shop", "web-1"), pod("shop", "web-2"), pod("ops", "probe"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "empty"}})
	source := clusterregistrytest.NewSource(srv.Cluster("local"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistry.ClientBuilder{})
	ctx := context.Background()

	client, err := syncer.Registry().Get("local")
	require.NoError(t, err)
	assert.Equal(t, clusterregistrytest.ServerVersion.GitVersion, client.ServerVersion().GitVersion)

	cs := client.Kubernetes()
	all, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, all.Items, 3)
	shop, err := cs.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, shop.Items, 2)
	assert.Equal(t, "web-1", shop.Items[0].Name)

	namespaces, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var names []string
	for _, ns := range namespaces.Items {
		names = append(names, ns.Name)
	}
	assert.Equal(t, []string{"default", "empty", "ops", "shop"}, names)

	_, err = cs.CoreV1().Namespaces().Get(ctx, "missing", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "got %v", err)

	dyn, err := client.Dynamic().Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).
		Namespace("ops").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, dyn.Items, 1)
	assert.Equal(t, "probe", dyn.Items[0].GetName())

	resources, err := client.Discovery().ServerResourcesForGroupVersion("v1")
	require.NoError(t, err)
	assert.Len(t, resources.APIResources, 2)
}

func TestServerConfigHasInlineCA(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	cfg := srv.Config()
	assert.Equal(t, srv.URL(), cfg.Host)
	assert.True(t, strings.HasPrefix(cfg.Host, "https://127.0.0.1:"))
	assert.Contains(t, string(cfg.CAData), "BEGIN CERTIFICATE")
	assert.Empty(t, cfg.CAFile)
	assert.Equal(t, srv.Token(), cfg.BearerToken)
}

func TestServerFaults(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*clusterregistrytest.Server)
		wantErr func(error) bool
	}{
		{"fail 500", func(s *clusterregistrytest.Server) { s.Fail(http.StatusInternalServerError) }, apierrors.IsInternalError},
		{"fail 401", func(s *clusterregistrytest.Server) { s.Fail(http.StatusUnauthorized) }, apierrors.IsUnauthorized},
		{"fail 403", func(s *clusterregistrytest.Server) { s.Fail(http.StatusForbidden) }, apierrors.IsForbidden},
		{"rotated token", func(s *clusterregistrytest.Server) { s.SetToken("another") }, apierrors.IsUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := clusterregistrytest.NewServer(t)
			cs := newClientset(t, srv)
			tt.give(srv)
			_, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
			assert.True(t, tt.wantErr(err), "got %v", err)
			srv.Heal()
			srv.SetToken(srv.Token())
		})
	}
}

func TestServerHealEndsFail(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	cs := newClientset(t, srv)
	srv.Fail(http.StatusInternalServerError)
	_, err := cs.Discovery().ServerVersion()
	require.Error(t, err)
	srv.Heal()
	_, err = cs.Discovery().ServerVersion()
	assert.NoError(t, err)
}

func TestServerBlackHoleTimesOutABuild(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	healthy := clusterregistrytest.NewServer(t)
	srv.BlackHole()
	source := clusterregistrytest.NewSource(srv.Cluster("silent"), healthy.Cluster("healthy"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistry.ClientBuilder{},
		clusterregistry.WithBuildTimeout(200*time.Millisecond))

	_, err := syncer.Registry().Get("silent")
	assert.ErrorContains(t, err, "timed out")
	_, err = syncer.Registry().Get("healthy")
	assert.NoError(t, err)
	assert.Positive(t, srv.Requests(), "the request reached the server and was held")
}

func TestServerBlackHoleHeal(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	cs := newClientset(t, srv)
	srv.BlackHole()
	errc := make(chan error, 1)
	go func() {
		_, err := cs.Discovery().ServerVersion()
		errc <- err
	}()
	require.Eventually(t, func() bool { return srv.Requests() == 1 }, 10*time.Second, time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("answered while black-holed: %v", err)
	default:
	}
	srv.Heal()
	assert.NoError(t, <-errc)
}

func TestServerDelay(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	cs := newClientset(t, srv)
	const delay = 300 * time.Millisecond
	srv.SetDelay(delay)

	ctx, cancel := context.WithTimeout(context.Background(), delay/10)
	_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	start := time.Now()
	_, err = cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), delay)
}

func TestServerAddRejectsOtherKinds(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	srv := clusterregistrytest.NewServer(rec)
	done := make(chan struct{})
	go func() { // Fatalf ends the goroutine, as it would end the test's
		defer close(done)
		srv.Add(&corev1.ConfigMap{})
	}()
	<-done
	assert.Contains(t, rec.fatal, "*v1.ConfigMap is not served")
}

// fatalRecorder is a testing.TB that records Fatalf instead of failing.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// newClientset returns a clientset for srv whose connections are closed at
// the end of the test, as a client outside the Registry must be.
func newClientset(t *testing.T, srv *clusterregistrytest.Server) kubernetes.Interface {
	t.Helper()
	hc, cs := httpClientAndClientset(t, srv)
	t.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	return cs
}

func httpClientAndClientset(t *testing.T, srv *clusterregistrytest.Server) (*http.Client, kubernetes.Interface) {
	t.Helper()
	cfg := srv.Config()
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	return hc, cs
}
