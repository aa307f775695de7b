package secret_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/clusterregistry/clusterregistry/source/internal/outagetest"
	"github.com/clusterregistry/clusterregistry/source/secret"
)

// While the Watch's informer cannot reach the hub, its cache is stale with
// nothing to say so, and client-go retries with a backoff of up to half a
// minute: List must not read it then. It asks the hub itself and fails, the
// Watch asks for Lists meanwhile, and once the hub answers again List shows
// what changed during the outage without waiting for the informer.
func TestListIsNeverStaleWhileTheWatchFails(t *testing.T) {
	client := fake.NewClientset(kubeconfigSecret("hub", "a", map[string]string{"kubeconfig": kubeconfig("a", "a")}))
	hub := outagetest.New(&client.Fake, "secrets")
	s, err := secret.New(client, secret.WithNudgePeriod(20*time.Millisecond))
	require.NoError(t, err)
	r := startWatch(t, s)
	names := func() ([]string, error) {
		clusters, err := s.List(context.Background())
		var out []string
		for _, c := range clusters {
			out = append(out, c.Name)
		}
		return out, err
	}
	got, err := names()
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, got)

	hub.Cut()
	require.Eventually(t, func() bool {
		_, err := names()
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "List reports the hub's error instead of the informer's stale cache")
	_, err = names()
	assert.ErrorContains(t, err, "connection refused")
	before := r.changes.Load()
	require.Eventually(t, func() bool { return r.changes.Load() >= before+2 }, 10*time.Second, 5*time.Millisecond,
		"the Watch asks for Lists while its informer fails")

	// A Secret created during the outage, seen once the hub is back.
	require.NoError(t, client.Tracker().Add(kubeconfigSecret("hub", "b", map[string]string{"kubeconfig": kubeconfig("b", "b")})))
	hub.Restore()
	got, err = names()
	require.NoError(t, err, "the hub answers again")
	assert.Equal(t, []string{"a", "b"}, got)
	require.Eventually(t, func() bool {
		got, err := names()
		return err == nil && len(got) == 2
	}, 10*time.Second, 5*time.Millisecond)
}
