package inventory

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// fast lifts client-go's default rate limit (5 requests/s).
var fast = clusterregistry.ClientBuilder{QPS: 1000, Burst: 1000}

// recordingBuilder is the library's ClientBuilder, recording every client
// it releases.
type recordingBuilder struct {
	clusterregistry.ClientBuilder

	mu       sync.Mutex // protects released
	released []*clusterregistry.Client
}

func (b *recordingBuilder) Release(c *clusterregistry.Client) {
	b.mu.Lock()
	b.released = append(b.released, c)
	b.mu.Unlock()
	b.ClientBuilder.Release(c)
}

// releases counts how often c was released.
func (b *recordingBuilder) releases(c *clusterregistry.Client) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, r := range b.released {
		if r == c {
			n++
		}
	}
	return n
}

func adminClient(t *testing.T, c *localcluster.Cluster) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	require.NoError(t, err)
	return cs
}

func adminDynamic(t *testing.T, c *localcluster.Cluster) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(c.AdminConfig())
	require.NoError(t, err)
	return d
}

// createNamespace creates the namespace name on c, with labels.
func createNamespace(t *testing.T, c kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	_, err := c.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	require.NoError(t, err)
}

// markMembers creates on each member a namespace only it has, so that a
// list through a client shows which cluster answered. Once per member.
var markOnce sync.Map // cluster name → *sync.Once

func markMembers(t *testing.T, members ...*localcluster.Cluster) {
	t.Helper()
	for _, m := range members {
		once, _ := markOnce.LoadOrStore(m.Name(), &sync.Once{})
		once.(*sync.Once).Do(func() { createNamespace(t, adminClient(t, m), "only-on-"+m.Name(), nil) })
	}
}

// namespacesOf lists the namespaces of client's cluster that markMembers
// made.
func namespacesOf(ctx context.Context, client *clusterregistry.Client) ([]string, error) {
	list, err := client.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ns := range list.Items {
		if strings.HasPrefix(ns.Name, "only-on-") {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}

var crds = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRD creates the CRD of the manifest at path on the hub, once, and
// waits until its resource is served.
var crdOnce sync.Map // path → *sync.Once

func installCRD(t *testing.T, hub dynamic.Interface, path string, gvr schema.GroupVersionResource) {
	t.Helper()
	once, _ := crdOnce.LoadOrStore(path, &sync.Once{})
	var err error
	once.(*sync.Once).Do(func() {
		var raw []byte
		raw, err = os.ReadFile(path)
		if err != nil {
			return
		}
		crd := &unstructured.Unstructured{}
		if err = yaml.Unmarshal(raw, &crd.Object); err != nil {
			return
		}
		_, err = hub.Resource(crds).Create(t.Context(), crd, metav1.CreateOptions{})
	})
	require.NoError(t, err)
	// Established, the CRD's resource is served once discovery catches up.
	require.Eventually(t, func() bool {
		_, err := hub.Resource(gvr).List(t.Context(), metav1.ListOptions{Limit: 1})
		return err == nil
	}, time.Minute, 50*time.Millisecond, "the hub serves %s", gvr)
}

// verifyNoLeak checks that nothing started after ignoreBefore runs, but for
// idle connections of transports that the harness and client-go keep. A
// connection whose last request has just ended (a watch cancelled by a
// stopping Syncer) is idle only a moment later: idle connections of hub, the
// transport the test's sources use, are closed and the check retried, for
// up to 30 seconds.
func verifyNoLeak(t *testing.T, hub http.RoundTripper, ignoreBefore goleak.Option) {
	t.Helper()
	opts := append(leakOptions(), ignoreBefore,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		utilnet.CloseIdleConnectionsFor(hub)
		err := goleak.Find(opts...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logs records what a Syncer logs, and passes it on to the test's log, so
// that a test can check that no credential is in it.
type logs struct {
	mu    sync.Mutex // protects lines
	lines []string
}

func (l *logs) logger(t *testing.T) logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, args)
		l.mu.Unlock()
		t.Log(prefix, args)
	}, funcr.Options{Verbosity: 1})
}

// requireNone fails t if a line logged so far holds one of secrets.
func (l *logs) requireNone(t *testing.T, secrets ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.NotEmpty(t, l.lines, "nothing was logged: this check could not fail")
	for _, line := range l.lines {
		for _, s := range secrets {
			require.NotContains(t, line, s, "a log line quotes a credential")
		}
	}
}

// runSyncer runs a Syncer over src until the returned stop is called (or
// the test ends), and returns its Registry after the first sync.
func runSyncer(t *testing.T, src clusterregistry.ClusterSource, b clusterregistry.Builder[*clusterregistry.Client],
	opts ...clusterregistry.Option) (*clusterregistry.Registry[*clusterregistry.Client], func()) {
	t.Helper()
	s, err := clusterregistry.NewSyncer(src, b, append([]clusterregistry.Option{
		clusterregistry.WithInterval(time.Hour), // only the watch can explain a prompt change
	}, opts...)...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(time.Minute):
				t.Fatal("Run did not return within a minute of its context's end")
			}
		})
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	defer wcancel()
	require.NoError(t, s.WaitForFirstSync(wctx))
	return s.Registry(), stop
}
