package clusterprofile_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/source/internal/outagetest"
)

// While the Watch's informer cannot reach the hub its cache may be stale:
// List asks the hub itself, and fails, until the hub answers again.
func TestListIsNeverStaleWhileTheWatchFails(t *testing.T) {
	client := newClient(profile("fleet", "a", gcpStatus("https://a.example")))
	hub := outagetest.New(&client.Fake, "clusterprofiles")
	s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithNamespace("fleet"))
	require.NoError(t, err)
	startWatch(t, s)
	assert.Equal(t, []string{"fleet:a"}, names(t, s))

	hub.Cut()
	require.Eventually(t, func() bool {
		_, err := s.List(context.Background())
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "List reports the hub's error instead of the informer's stale cache")
	hub.Restore()
	assert.Equal(t, []string{"fleet:a"}, names(t, s), "the hub answers again")
}
