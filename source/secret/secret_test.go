package secret_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/secret"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var hostBuilder = clusterregistry.BuilderFuncs[string]{
	BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
}

func TestListWithoutWatchAsksTheAPIServer(t *testing.T) {
	other := kubeconfigSecret("hub", "unlabelled", map[string]string{"kubeconfig": kubeconfig("a", "a")})
	other.Labels = nil
	client := fake.NewClientset(
		kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")}),
		kubeconfigSecret("hub", "broken", map[string]string{"other": "x"}),
		kubeconfigSecret("elsewhere", "stage", map[string]string{"kubeconfig": kubeconfig("s", "s")}),
		other,
	)
	s, err := secret.New(client, secret.WithNamespace("hub"), secret.WithDefault("prod"))
	require.NoError(t, err)
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 2)
	assert.Equal(t, got{Name: "broken", Err: "hub/broken|data[kubeconfig]"}, summarize(t, clusters[0]))
	assert.Equal(t, got{Name: "prod", Host: "https://a.example"}, summarize(t, clusters[1]))
	assert.True(t, clusters[1].Default)
	assert.Equal(t, map[string]string{mcrLabel: "true"}, clusters[1].Labels)
}

func TestListFailsWhenTheAPIServerDoes(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	s, err := secret.New(client)
	require.NoError(t, err)
	_, err = s.List(context.Background())
	assert.ErrorContains(t, err, "list secrets: connection refused")
}

func TestNameClashAcrossNamespaces(t *testing.T) {
	client := fake.NewClientset(
		kubeconfigSecret("one", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")}),
		kubeconfigSecret("two", "prod", map[string]string{"kubeconfig": kubeconfig("b", "b")}),
		kubeconfigSecret("two", "stage", map[string]string{"kubeconfig": kubeconfig("s", "s")}),
	)
	s, err := secret.New(client)
	require.NoError(t, err)
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 2)
	assert.Equal(t, got{Name: "prod", Err: "one/prod|metadata.name"}, summarize(t, clusters[0]))
	assert.ErrorContains(t, clusters[0].Err, `cluster "prod" is also defined by two/prod`)
	assert.Equal(t, got{Name: "stage", Host: "https://s.example"}, summarize(t, clusters[1]))
}

// TestNameClashDefaultAndLabels checks what the one cluster of a clash
// carries: the default mark only when WithDefault names it (never for a name
// that no option named, the empty name included), and the first Secret's
// labels.
func TestNameClashDefaultAndLabels(t *testing.T) {
	one := kubeconfigSecret("a", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")})
	one.Labels["env"] = "prod"
	two := kubeconfigSecret("b", "prod", map[string]string{"kubeconfig": kubeconfig("b", "b")})
	two.Labels["env"] = "dev"
	tests := []struct {
		name        string
		give        []secret.Option
		wantName    string
		wantDefault bool
	}{
		{name: "no default", wantName: "prod"},
		{name: "WithDefault names it", give: []secret.Option{secret.WithDefault("prod")}, wantName: "prod", wantDefault: true},
		{name: "WithDefault names another", give: []secret.Option{secret.WithDefault("stage")}, wantName: "prod"},
		{name: "an empty name is no default", give: []secret.Option{secret.WithRename(func(string) string { return "" })}, wantName: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := secret.New(fake.NewClientset(two, one), tt.give...)
			require.NoError(t, err)
			clusters, err := s.List(context.Background())
			require.NoError(t, err)
			require.Len(t, clusters, 1)
			c := clusters[0]
			assert.Equal(t, got{Name: tt.wantName, Err: "a/prod|metadata.name"}, summarize(t, c))
			assert.Nil(t, c.Config)
			assert.Equal(t, tt.wantDefault, c.Default)
			assert.Equal(t, map[string]string{mcrLabel: "true", "env": "prod"}, c.Labels, "the first Secret's labels")
			assert.ErrorContains(t, c.Err, "is also defined by b/prod")
		})
	}
}

func TestArgoCDNameClash(t *testing.T) {
	client := fake.NewClientset(
		argoSecret("argocd", "c1", map[string]string{"name": "prod", "server": "https://a"}),
		argoSecret("argocd", "c2", map[string]string{"name": "prod", "server": "https://b"}),
	)
	s, err := secret.New(client, secret.WithFormat(secret.ArgoCD))
	require.NoError(t, err)
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	assert.Equal(t, got{Name: "prod", Err: "argocd/c1|data[name]"}, summarize(t, clusters[0]))
}

// running is a Watch in progress.
type running struct {
	changes atomic.Int64
	stop    context.CancelFunc
	done    chan struct{} // closed when Watch has returned
	err     error         // what Watch returned; read after done
}

// wait stops the watch and waits, at most 10s, for Watch to return.
func (r *running) wait(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case <-r.done:
		assert.NoError(t, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

func startWatch(t *testing.T, s *secret.Source) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Watch(ctx, func() { r.changes.Add(1) })
	}()
	t.Cleanup(func() { r.wait(t) })
	// Watch calls changed once when its cache has synced.
	require.Eventually(t, func() bool { return r.changes.Load() > 0 }, 5*time.Second, time.Millisecond)
	return r
}

func TestWatchStopsItsInformer(t *testing.T) {
	before := goleak.IgnoreCurrent()
	client := fake.NewClientset(kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")}))
	s, err := secret.New(client)
	require.NoError(t, err)
	r := startWatch(t, s)

	// While the watch runs, List reads its cache: the API server is not asked.
	var lists atomic.Int64
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return false, nil, nil
	})
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, clusters, 1)

	r.wait(t)
	goleak.VerifyNone(t, before)

	assert.Zero(t, lists.Load())
	_, err = s.List(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 1, lists.Load(), "with no watch, List asks the API server")
}

func TestWatchEndsBeforeSyncWhenCancelled(t *testing.T) {
	before := goleak.IgnoreCurrent()
	client := fake.NewClientset()
	// The informer's list never succeeds, so it never syncs.
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden")
	})
	s, err := secret.New(client)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func() { t.Error("no change before sync") }) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
	goleak.VerifyNone(t, before)
}

// TestSyncerFollowsSecrets creates, changes and deletes Secrets through the
// fake clientset while a Syncer runs whose own clock never moves: only the
// watch can bring the changes in.
func TestSyncerFollowsSecrets(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	secrets := client.CoreV1().Secrets("argocd")
	s, err := secret.New(client, secret.WithFormat(secret.ArgoCD), secret.WithNamespace("argocd"), secret.WithDefault("prod"))
	require.NoError(t, err)
	syncer, err := clusterregistry.NewSyncer(s, hostBuilder,
		clusterregistry.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0))))
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- syncer.Run(runCtx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.NoError(t, syncer.WaitForFirstSync(ctx))
	reg := syncer.Registry()
	assert.Empty(t, reg.Snapshot().Names())

	waitFor := func(msg string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, 5*time.Second, time.Millisecond, msg)
	}
	hostIs := func(name, host string) func() bool {
		return func() bool { h, err := reg.Get(name); return err == nil && h == host }
	}

	// Created.
	prod := argoSecret("argocd", "cluster-prod", map[string]string{"name": "prod", "server": "https://prod-1.example",
		"config": `{"bearerToken": "tok-s3cr3t"}`})
	prod.ResourceVersion = "10"
	_, err = secrets.Create(ctx, prod, metav1.CreateOptions{})
	require.NoError(t, err)
	waitFor("created", hostIs("prod", "https://prod-1.example"))
	info, ok := reg.Snapshot().Cluster("prod")
	require.True(t, ok)
	assert.Equal(t, "10", info.Revision, "the resourceVersion is the revision")
	h, err := reg.Default()
	require.NoError(t, err)
	assert.Equal(t, "https://prod-1.example", h)

	// Changed.
	prod.Data["server"] = []byte("https://prod-2.example")
	prod.ResourceVersion = "11"
	_, err = secrets.Update(ctx, prod, metav1.UpdateOptions{})
	require.NoError(t, err)
	waitFor("changed", hostIs("prod", "https://prod-2.example"))

	// Broken: the client stays, the error is beside it.
	prod.Data["config"] = []byte(`{"bearerToken": "tok-s3cr3t", "password": "pw-s3cr3t"}`)
	prod.ResourceVersion = "12"
	_, err = secrets.Update(ctx, prod, metav1.UpdateOptions{})
	require.NoError(t, err)
	waitFor("broken", func() bool { return reg.Snapshot().Err("prod") != nil })
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, reg.Snapshot().Err("prod"), &fe)
	assert.Equal(t, "argocd/cluster-prod", fe.Location)
	assert.NotContains(t, reg.Snapshot().Err("prod").Error(), "s3cr3t")
	h, err = reg.Get("prod")
	require.NoError(t, err)
	assert.Equal(t, "https://prod-2.example", h)

	// Another one, then the first deleted.
	stage := argoSecret("argocd", "cluster-stage", map[string]string{"name": "stage", "server": "https://stage.example"})
	_, err = secrets.Create(ctx, stage, metav1.CreateOptions{})
	require.NoError(t, err)
	waitFor("second created", hostIs("stage", "https://stage.example"))
	require.NoError(t, secrets.Delete(ctx, "cluster-prod", metav1.DeleteOptions{}))
	waitFor("deleted", func() bool { return len(reg.Snapshot().Names()) == 1 })
	_, err = reg.Get("prod")
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)

	// A Secret the selector does not take is ignored, even if the watch
	// delivers it.
	plain := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "plain"},
		Data: map[string][]byte{"name": []byte("plain"), "server": []byte("https://plain.example")}}
	_, err = secrets.Create(ctx, plain, metav1.CreateOptions{})
	require.NoError(t, err)
	relabelled := stage.DeepCopy()
	relabelled.Data["server"] = []byte("https://stage-2.example")
	_, err = secrets.Update(ctx, relabelled, metav1.UpdateOptions{})
	require.NoError(t, err)
	waitFor("after the plain Secret", hostIs("stage", "https://stage-2.example"))
	assert.Equal(t, []string{"stage"}, reg.Snapshot().Names())
}
