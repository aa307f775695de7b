package e2e

import (
	"bufio"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// describe returns the Cluster a source would list for c with token.
func describe(c *localcluster.Cluster, token string, isDefault bool) clusterregistry.Cluster {
	return clusterregistry.Cluster{Name: c.Name(), Config: c.ConfigForToken(token), Default: isDefault}
}

// fast lifts client-go's default rate limit (5 requests/s), which the
// hammering tests would otherwise measure instead of the library.
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

// shutdown runs s.Run with a context that is already cancelled: Run then
// empties the Registry and releases every client before it returns. It is
// how a test that drives a Syncer with Sync alone cleans up.
func shutdown[T any](t *testing.T, s *clusterregistry.Syncer[T]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.Run(ctx))
}

// syncCtx bounds one Sync of a test.
func syncCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// countFDs counts this process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// countTCP counts this process's TCP sockets that are not listening: its
// connections to the API servers and the proxies' own connections, which
// run in this process too.
func countTCP(t *testing.T) int {
	t.Helper()
	inodes := map[string]bool{}
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range entries {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && fields[3] != "0A" && inodes[fields[9]] { // 0A: LISTEN
				n++
			}
		}
		_ = f.Close()
	}
	return n
}

// adminClient returns a clientset with the harness's own credential, which
// bypasses the cluster's proxy.
func adminClient(t *testing.T, c *localcluster.Cluster) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	require.NoError(t, err)
	return cs
}

func configMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"written": "before"}}
}

var namespaces = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// waitFor polls cond every 10ms for up to 30s, and fails the test with
// what, and the details if given, when cond stays false.
func waitFor(t *testing.T, what string, cond func() bool, details ...func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			msg := "timed out waiting for " + what
			for _, d := range details {
				msg += ": " + d()
			}
			require.FailNow(t, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
