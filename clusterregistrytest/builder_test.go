package clusterregistrytest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func pod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

func podNames(t *testing.T, c *clusterregistrytest.FakeClient) []string {
	t.Helper()
	list, err := c.Kubernetes().CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	return names
}

func TestFakeBuilderSeedsEachClusterItsOwnObjects(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("a", pod("shop", "web-1"))
	builder.Seed("a", pod("shop", "web-2"))
	builder.Seed("b", pod("ops", "probe"))
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"), clusterregistrytest.NewCluster("b"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)

	a, err := syncer.Registry().Get("a")
	require.NoError(t, err)
	b, err := syncer.Registry().Get("b")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"shop/web-1", "shop/web-2"}, podNames(t, a))
	assert.Equal(t, []string{"ops/probe"}, podNames(t, b))
	assert.Equal(t, "a", a.Name())
	assert.Same(t, a, builder.Client("a"))
}

func TestFakeBuilderClientsDoNotShareObjects(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("a", pod("shop", "web-1"))
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	first := builder.Client("a")
	_, err := first.Kubernetes().CoreV1().Pods("shop").Create(context.Background(), pod("shop", "extra"), metav1.CreateOptions{})
	require.NoError(t, err)

	source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("a"), "rotated"))
	clusterregistrytest.Sync(t, syncer)
	second := builder.Client("a")
	require.NotSame(t, first, second)
	assert.Equal(t, []string{"shop/web-1"}, podNames(t, second))
	assert.Equal(t, 2, second.Build())
	assert.True(t, first.Released(), "the replaced client is released")
	assert.False(t, second.Released())
}

func TestFakeBuilderVersion(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	v := version.Info{Major: "1", Minor: "30", GitVersion: "v1.30.4"}
	builder.SetVersion("old", v)
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("old"), clusterregistrytest.NewCluster("new"))
	clusterregistrytest.StartSyncer(t, source, builder)

	old := builder.Client("old")
	assert.Equal(t, v, old.ServerVersion())
	got, err := old.Kubernetes().Discovery().ServerVersion()
	require.NoError(t, err)
	assert.Equal(t, v, *got)
	assert.Equal(t, clusterregistrytest.DefaultVersion, builder.Client("new").ServerVersion())
}

func TestFakeBuilderFailKeepsLastGoodClient(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC))
	builder := clusterregistrytest.NewFakeBuilder()
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"), clusterregistrytest.NewCluster("b"))
	builder.Fail("b", errors.New("server version: connection refused"))
	// No Run: only this test's Syncs, so that their reports are exact.
	syncer, err := clusterregistry.NewSyncer(source, builder,
		clusterregistry.WithClock(clock), clusterregistry.WithBackoff(time.Second, time.Minute))
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)
	reg := syncer.Registry()

	_, err = reg.Get("b")
	var ce *clusterregistry.ClusterError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "b", ce.Name)
	assert.ErrorContains(t, err, "connection refused")

	good := builder.Client("a")
	builder.Fail("a", errors.New("server version: 401 Unauthorized"))
	source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("a"), "bad"))
	rep := clusterregistrytest.Sync(t, syncer)
	assert.Equal(t, []string{"a", "b"}, rep.Failed)
	current, err := reg.Get("a")
	require.NoError(t, err)
	assert.Same(t, good, current, "the last good client stays in service")
	assert.ErrorContains(t, reg.Snapshot().Err("a"), "401")

	builder.Heal("a")
	builder.Heal("b")
	clock.Step(2 * time.Minute) // past both backoffs
	rep = clusterregistrytest.Sync(t, syncer)
	assert.Equal(t, []string{"b"}, rep.Added)
	assert.Equal(t, []string{"a"}, rep.Updated)
	assert.Empty(t, rep.Failed)
}

func TestFakeBuilderBlackHoleTimesOutAndHeals(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.BlackHole("a")
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"), clusterregistrytest.NewCluster("b"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder,
		clusterregistry.WithBuildTimeout(50*time.Millisecond))
	reg := syncer.Registry()

	_, err := reg.Get("a")
	assert.ErrorContains(t, err, "timed out")
	_, err = reg.Get("b")
	assert.NoError(t, err, "a black hole delays nobody else")

	// A build in the black hole goes on when healed.
	builder.BlackHole("c")
	done := make(chan error, 1)
	go func() {
		_, err := builder.Build(context.Background(), clusterregistrytest.NewCluster("c"))
		done <- err
	}()
	builder.Heal("c")
	assert.NoError(t, <-done)
}

// recorder is a testing.TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestCheckReleased(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	ctx := context.Background()
	a, err := builder.Build(ctx, clusterregistrytest.NewCluster("a"))
	require.NoError(t, err)
	b, err := builder.Build(ctx, clusterregistrytest.NewCluster("b"))
	require.NoError(t, err)

	rec := &recorder{TB: t}
	builder.Release(a)
	builder.CheckReleased(rec)
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "never released: [b#2]")

	rec = &recorder{TB: t}
	builder.Release(b)
	builder.Release(b)
	builder.Release(&clusterregistrytest.FakeClient{})
	builder.CheckReleased(rec)
	require.Len(t, rec.errors, 2)
	assert.Contains(t, rec.errors[0], "more than once: [b#2]")
	assert.Contains(t, rec.errors[1], "did not build")
}

func TestCheckReleasedAfterSyncerStops(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	t.Cleanup(func() {
		assert.Empty(t, builder.Live())
		builder.CheckReleased(t)
	}) // runs after StartSyncer's cleanup
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"), clusterregistrytest.NewCluster("b"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	source.Upsert(clusterregistrytest.WithToken(clusterregistrytest.NewCluster("a"), "x"))
	source.Delete("b")
	clusterregistrytest.Sync(t, syncer)
	assert.Len(t, builder.Built(), 3)
	assert.Len(t, builder.Live(), 1)
}

// unknown is an object type that client-go's scheme does not know.
type unknown struct{ metav1.TypeMeta }

func (u *unknown) DeepCopyObject() runtime.Object { c := *u; return &c }
func (u *unknown) GetObjectKind() schema.ObjectKind {
	return &u.TypeMeta
}

func TestSeedPanicsOnUnknownObject(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	assert.Panics(t, func() { builder.Seed("a", &unknown{}) })
	_, err := builder.Build(context.Background(), clusterregistrytest.NewCluster("a"))
	assert.NoError(t, err, "a refused seed is not kept")
}
