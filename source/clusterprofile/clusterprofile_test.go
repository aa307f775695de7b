package clusterprofile_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
)

func namespace(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name}}}
	u.SetLabels(labels)
	return u
}

func gcpStatus(server string) map[string]any {
	return map[string]any{"accessProviders": []any{access("gcp", server, nil)}}
}

func names(t *testing.T, s *clusterprofile.Source) []string {
	t.Helper()
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	out := make([]string, len(clusters))
	for i, c := range clusters {
		out[i] = c.Name
	}
	return out
}

func TestList(t *testing.T) {
	other := profile("team-b", "prod", gcpStatus("https://b.example"))
	other.SetLabels(map[string]string{"env": "prod"})
	client := newClient(
		profile("team-a", "prod", gcpStatus("https://a.example")),
		other,
		profile("team-a", "broken", nil),
		namespace("team-a", map[string]string{clusterprofile.LabelClusterSet: "set-a"}),
	)
	s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithDefault("team-b:prod"))
	require.NoError(t, err)
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 3)
	assert.Equal(t, got{Name: "team-a:broken", Err: "team-a/broken|status.accessProviders"}, summarize(t, clusters[0]))
	assert.Equal(t, got{Name: "team-a:prod", Host: "https://a.example", Exec: "/usr/local/bin/gcp-plugin"}, summarize(t, clusters[1]))
	assert.Equal(t, got{Name: "team-b:prod", Host: "https://b.example", Exec: "/usr/local/bin/gcp-plugin"}, summarize(t, clusters[2]))
	assert.Equal(t, "set-a", clusters[1].Labels[clusterprofile.LabelClusterSet], "the namespace's clusterset")
	assert.NotContains(t, clusters[2].Labels, clusterprofile.LabelClusterSet, "a namespace the hub does not have")
	assert.True(t, clusters[2].Default)
	assert.False(t, clusters[1].Default)

	s, err = clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")},
		clusterprofile.WithLabelSelector("env=prod"))
	require.NoError(t, err)
	assert.Equal(t, []string{"team-b:prod"}, names(t, s))
	s, err = clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithNamespace("team-a"))
	require.NoError(t, err)
	assert.Equal(t, []string{"team-a:broken", "team-a:prod"}, names(t, s))
}

func TestListFails(t *testing.T) {
	t.Run("the API server fails", func(t *testing.T) {
		client := newClient()
		client.PrependReactor("list", "clusterprofiles", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection refused")
		})
		s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")})
		require.NoError(t, err)
		_, err = s.List(context.Background())
		assert.EqualError(t, err, "list clusterprofiles: connection refused")
	})
	t.Run("namespaces forbidden: no clusterset", func(t *testing.T) {
		client := newClient(profile("a", "p", gcpStatus("https://x")))
		client.PrependReactor("get", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "a", errors.New("no"))
		})
		s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")})
		require.NoError(t, err)
		clusters, err := s.List(context.Background())
		require.NoError(t, err)
		require.Len(t, clusters, 1)
		assert.NoError(t, clusters[0].Err)
		assert.NotContains(t, clusters[0].Labels, clusterprofile.LabelClusterSet)
	})
	t.Run("namespaces fail", func(t *testing.T) {
		client := newClient(profile("a", "p", gcpStatus("https://x")))
		client.PrependReactor("get", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection refused")
		})
		s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")})
		require.NoError(t, err)
		_, err = s.List(context.Background())
		assert.EqualError(t, err, "get namespace a: connection refused")
	})
	t.Run("too many", func(t *testing.T) {
		client := newClient(profile("a", "p1", nil), profile("a", "p2", nil), profile("a", "p3", nil))
		s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithMaxClusters(2))
		require.NoError(t, err)
		_, err = s.List(context.Background())
		assert.ErrorContains(t, err, "more than the limit of 2 clusters (WithMaxClusters)")
	})
}

func TestNew(t *testing.T) {
	client := newClient()
	_, err := clusterprofile.New(nil, []clusterprofile.Provider{provider("gcp")})
	assert.ErrorContains(t, err, "client must not be nil")
	_, err = clusterprofile.New(client, nil)
	assert.ErrorContains(t, err, "no providers")
	_, err = clusterprofile.New(client, []clusterprofile.Provider{provider("gcp"), provider("gcp")})
	assert.ErrorContains(t, err, "field providers[gcp]: defined more than once")
	_, err = clusterprofile.New(client, []clusterprofile.Provider{{Name: "x", ExecConfig: &clientcmdapi.ExecConfig{APIVersion: "v1"}}})
	assert.ErrorContains(t, err, "field providers[x].execConfig.command: must not be empty")
	_, err = clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithLabelSelector("=="))
	assert.ErrorContains(t, err, "label selector")
	_, err = clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithMaxClusters(0))
	assert.ErrorContains(t, err, "max clusters must be at least 1")
}

// running is a Watch in progress.
type running struct {
	changes atomic.Int64
	stop    context.CancelFunc
	done    chan error
}

func startWatch(t *testing.T, s *clusterprofile.Source) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Watch(ctx, func() { r.changes.Add(1) }) }()
	t.Cleanup(func() { r.wait(t) })
	require.Eventually(t, func() bool { return r.changes.Load() > 0 }, 5*time.Second, time.Millisecond,
		"Watch calls changed once its cache has synced")
	return r
}

// wait stops the watch and waits, at most 10s, for Watch to return.
func (r *running) wait(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok {
			assert.NoError(t, err)
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

func TestWatch(t *testing.T) {
	before := goleak.IgnoreCurrent()
	client := newClient(profile("fleet", "a", gcpStatus("https://a.example")))
	s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithNamespace("fleet"))
	require.NoError(t, err)
	r := startWatch(t, s)
	profiles := client.Resource(clusterprofile.GroupVersionResource).Namespace("fleet")
	ctx := context.Background()

	// While the watch runs, List reads its cache.
	var lists atomic.Int64
	client.PrependReactor("list", "clusterprofiles", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return false, nil, nil
	})
	assert.Equal(t, []string{"fleet:a"}, names(t, s))
	assert.Zero(t, lists.Load())

	changedBy := func(what string, change func()) {
		t.Helper()
		n := r.changes.Load()
		change()
		require.Eventually(t, func() bool { return r.changes.Load() > n }, 5*time.Second, time.Millisecond, what)
	}
	changedBy("a profile created", func() {
		_, err := profiles.Create(ctx, profile("fleet", "b", gcpStatus("https://b.example")), metav1.CreateOptions{})
		require.NoError(t, err)
	})
	assert.Equal(t, []string{"fleet:a", "fleet:b"}, names(t, s))

	// A condition's heartbeat is no change; the server that follows is, and
	// the informer delivers events in order.
	n := r.changes.Load()
	beat := profile("fleet", "b", gcpStatus("https://b.example"))
	beat.Object["status"].(map[string]any)["conditions"] = []any{map[string]any{
		"type": "ControlPlaneHealthy", "status": "Unknown", "lastTransitionTime": "2026-12-02T22:00:00Z", "message": "first"}}
	_, err = profiles.Update(ctx, beat, metav1.UpdateOptions{})
	require.NoError(t, err)
	beat.Object["status"].(map[string]any)["conditions"] = []any{map[string]any{
		"type": "ControlPlaneHealthy", "status": "Unknown", "lastTransitionTime": "2026-12-02T22:01:00Z", "message": "second"}}
	_, err = profiles.Update(ctx, beat, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = profiles.Update(ctx, profile("fleet", "b", gcpStatus("https://b2.example")), metav1.UpdateOptions{})
	require.NoError(t, err)
	// Once the last update is in the cache and its change is told, the
	// first update added a condition (a change); the second changed nothing
	// List reads.
	require.Eventually(t, func() bool {
		clusters, err := s.List(ctx)
		return err == nil && clusters[1].Config.Host == "https://b2.example" && r.changes.Load() >= n+2
	}, 5*time.Second, time.Millisecond, "the new server reaches List")
	assert.Equal(t, n+2, r.changes.Load())

	changedBy("a profile deleted", func() {
		require.NoError(t, profiles.Delete(ctx, "a", metav1.DeleteOptions{}))
	})
	assert.Equal(t, []string{"fleet:b"}, names(t, s))

	r.wait(t)
	goleak.VerifyNone(t, before)
	// Stopped, List asks the API server again.
	assert.Equal(t, []string{"fleet:b"}, names(t, s))
	assert.Positive(t, lists.Load())
}

func TestWatchEndsBeforeSyncWhenCancelled(t *testing.T) {
	client := newClient()
	block := make(chan struct{})
	client.PrependWatchReactor("clusterprofiles", func(k8stesting.Action) (bool, watch.Interface, error) {
		<-block
		return false, nil, nil
	})
	client.PrependReactor("list", "clusterprofiles", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-block
		return false, nil, nil
	})
	s, err := clusterprofile.New(client, []clusterprofile.Provider{provider("gcp")})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func() { t.Error("changed before the cache synced") }) }()
	cancel()
	close(block)
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return")
	}
}

// TestProviderPluginRuns drives a real Syncer with the library's
// ClientBuilder against a TLS server that only the operator's plugin's
// token opens: the plugin runs, with the profile's exec extension in
// KUBERNETES_EXEC_INFO.
func TestProviderPluginRuns(t *testing.T) {
	srv := trusttest.NewServer(t)
	marker := trusttest.Marker(t)
	cred := fmt.Sprintf(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":%q}}`, srv.Token)
	script := `printf '%s' "$KUBERNETES_EXEC_INFO" > "$MARKER" && printf '%s' '` + cred + `'`
	op := clusterprofile.Provider{Name: "token", ExecConfig: &clientcmdapi.ExecConfig{
		Command: "/bin/sh", Args: []string{"-c", script}, APIVersion: "client.authentication.k8s.io/v1",
		Env: []clientcmdapi.ExecEnvVar{{Name: "MARKER", Value: marker}}, ProvideClusterInfo: true,
	}}
	client := newClient(profile("fleet", "x", map[string]any{"accessProviders": []any{access("token", srv.URL, map[string]any{
		"certificate-authority-data": base64.StdEncoding.EncodeToString(srv.CA),
		"extensions":                 []any{map[string]any{"name": clusterprofile.ExecExtension, "extension": map[string]any{"audience": "fleet-x"}}},
	})}}))
	s, err := clusterprofile.New(client, []clusterprofile.Provider{op})
	require.NoError(t, err)
	reg := trusttest.RunSyncer(t, s)

	c, err := reg.Get("fleet:x")
	require.NoError(t, err, "the plugin's token opened the server")
	assert.Equal(t, "v1.37.2", c.ServerVersion().GitVersion)
	require.True(t, trusttest.Exists(t, marker), "the plugin ran")
	info := readFile(t, marker)
	assert.Contains(t, info, `"config":{"audience":"fleet-x"}`, "the exec extension reached the plugin")
	assert.True(t, strings.Contains(info, srv.URL), "the cluster's server reached the plugin")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
