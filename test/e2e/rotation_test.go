package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// hammer sends requests through a Registry's client for one cluster, from
// its own goroutine, and counts how they end and which token they carried.
type hammer struct {
	unauthorized, notFound, otherErrs atomic.Int64

	mu      sync.Mutex // protects okBy and lastErr
	okBy    map[string]int
	lastErr error

	stop chan struct{}
	wg   sync.WaitGroup
}

func startHammer(reg *clusterregistry.Registry[*clusterregistry.Client], name string) *hammer {
	h := &hammer{okBy: map[string]int{}, stop: make(chan struct{})}
	h.wg.Go(func() {
		for {
			select {
			case <-h.stop:
				return
			default:
			}
			h.once(reg, name)
		}
	})
	return h
}

func (h *hammer) once(reg *clusterregistry.Registry[*clusterregistry.Client], name string) {
	client, err := reg.Get(name)
	if err != nil {
		h.fail(err, &h.notFound)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = client.Kubernetes().CoreV1().Namespaces().Get(ctx, localcluster.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsUnauthorized(err):
		h.fail(err, &h.unauthorized)
	case err != nil:
		h.fail(err, &h.otherErrs)
	default:
		h.mu.Lock()
		h.okBy[client.Config().BearerToken]++
		h.mu.Unlock()
	}
}

func (h *hammer) fail(err error, counter *atomic.Int64) {
	counter.Add(1)
	h.mu.Lock()
	h.lastErr = err
	h.mu.Unlock()
}

// ok returns how many requests with token have succeeded so far.
func (h *hammer) ok(token string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.okBy[token]
}

func (h *hammer) halt() {
	close(h.stop)
	h.wg.Wait()
}

// A cluster's token is replaced in the source while requests keep flowing:
// one sync swaps in a client with the new token, built before the swap, and
// releases the old one; the old token is then revoked. No request fails
// with 401 or "not found" at any point, and the revocation is real: the old
// token alone gets 401 afterwards.
func TestCredentialRotationUnderLoad(t *testing.T) {
	env := localcluster.StartT(t, 2)
	c1, c2 := env.Cluster("cluster-1"), env.Cluster("cluster-2")
	oldToken := c1.Token()

	source := clusterregistry.NewMemorySource(describe(c1, oldToken, true), describe(c2, c2.Token(), false))
	builder := &recordingBuilder{ClientBuilder: fast}
	s, err := clusterregistry.NewSyncer(source, builder, clusterregistry.WithLogger(testr.New(t)))
	require.NoError(t, err)
	defer shutdown(t, s)
	rep, err := s.Sync(syncCtx(t))
	require.NoError(t, err)
	require.Equal(t, []string{"cluster-1", "cluster-2"}, rep.Added)
	reg := s.Registry()
	oldClient, err := reg.Get("cluster-1")
	require.NoError(t, err)

	h := startHammer(reg, "cluster-1")
	defer func() {
		select {
		case <-h.stop:
		default:
			h.halt()
		}
	}()
	waitFor(t, "requests with the old token", func() bool { return h.ok(oldToken) >= 20 })

	newToken, err := c1.IssueToken(t.Context())
	require.NoError(t, err)
	source.Upsert(describe(c1, newToken, true))
	rep, err = s.Sync(syncCtx(t))
	require.NoError(t, err)
	assert.Equal(t, []string{"cluster-1"}, rep.Updated)
	assert.Equal(t, 1, rep.Unchanged, "cluster-2 is not rebuilt")
	assert.Empty(t, rep.Failed)

	newClient, err := reg.Get("cluster-1")
	require.NoError(t, err)
	assert.NotSame(t, oldClient, newClient)
	assert.Equal(t, newToken, newClient.Config().BearerToken)
	assert.Equal(t, 1, builder.releases(oldClient), "the old client is released once")
	assert.Zero(t, builder.releases(newClient))

	// Revoke the old token (this waits until the API server rejects it)
	// while the hammer goes on with the new one.
	require.NoError(t, c1.RevokeToken(t.Context(), oldToken))
	afterRevoke := h.ok(newToken)
	waitFor(t, "requests with the new token after the revocation", func() bool { return h.ok(newToken) >= afterRevoke+20 })
	h.halt()

	h.mu.Lock()
	lastErr := h.lastErr
	t.Logf("requests that succeeded: %d with the old token, %d with the new one", h.okBy[oldToken], h.okBy[newToken])
	h.mu.Unlock()
	assert.Zero(t, h.unauthorized.Load(), "401s during the rotation (last error: %v)", lastErr)
	assert.Zero(t, h.notFound.Load(), "lookups that missed the cluster (last error: %v)", lastErr)
	assert.Zero(t, h.otherErrs.Load(), "other failed requests (last error: %v)", lastErr)

	// Had the Registry kept the old client, its requests would now fail.
	oldOnly, err := kubernetes.NewForConfig(c1.ConfigForToken(oldToken))
	require.NoError(t, err)
	_, err = oldOnly.CoreV1().Namespaces().Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
	assert.True(t, apierrors.IsUnauthorized(err), "the revoked token gets 401, got %v", err)
	_, err = newClient.Kubernetes().CoreV1().Namespaces().Get(t.Context(), localcluster.Namespace, metav1.GetOptions{})
	assert.NoError(t, err)
}
