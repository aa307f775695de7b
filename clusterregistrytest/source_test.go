package clusterregistrytest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

var errStore = errors.New("store unreachable")

func TestNewClusterIsUsableAndDistinct(t *testing.T) {
	a, b := clusterregistrytest.NewCluster("a"), clusterregistrytest.NewDefaultCluster("b")
	assert.Equal(t, "a", a.Name)
	assert.False(t, a.Default)
	assert.True(t, b.Default)
	assert.NotEmpty(t, a.Config.Host)
	assert.NotEqual(t, a.Config.Host, b.Config.Host)
	assert.NotEqual(t, a.Config.BearerToken, b.Config.BearerToken)
}

func TestWithTokenCopiesAndRebuilds(t *testing.T) {
	orig := clusterregistrytest.NewCluster("a")
	rotated := clusterregistrytest.WithToken(orig, "new-token")
	assert.Equal(t, "token-a", orig.Config.BearerToken, "the original must not change")
	assert.Equal(t, "new-token", rotated.Config.BearerToken)

	source := clusterregistrytest.NewSource(orig)
	builder := clusterregistrytest.NewFakeBuilder()
	syncer, err := clusterregistry.NewSyncer(source, builder) // no Run: exact reports
	require.NoError(t, err)
	clusterregistrytest.Sync(t, syncer)
	first := builder.Client("a")

	source.Upsert(rotated)
	rep := clusterregistrytest.Sync(t, syncer)
	assert.Equal(t, []string{"a"}, rep.Updated)
	assert.NotSame(t, first, builder.Client("a"))
	assert.Equal(t, "new-token", builder.Client("a").Config().BearerToken)
}

func TestSourceFailKeepsLastGoodStateUntilHeal(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder())
	reg := syncer.Registry()

	source.Fail(errStore)
	source.Delete("a") // not visible while the source fails
	_, err := syncer.Sync(context.Background())
	require.ErrorIs(t, err, errStore)
	assert.Equal(t, []string{"a"}, reg.Snapshot().Names())
	assert.ErrorIs(t, reg.Snapshot().SourceErr(), errStore)

	source.Heal()
	clusterregistrytest.Sync(t, syncer)
	assert.Empty(t, reg.Snapshot().Names())
	assert.NoError(t, reg.Snapshot().SourceErr())
}

func TestSourceFailTriggersWatchers(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder(),
		clusterregistry.WithInterval(time.Hour)) // only the watch can cause a sync

	source.Fail(errStore)
	require.Eventually(t, func() bool {
		return errors.Is(syncer.Registry().Snapshot().SourceErr(), errStore)
	}, 10*time.Second, time.Millisecond, "Fail must trigger a sync")

	source.Heal()
	require.Eventually(t, func() bool {
		return syncer.Registry().Snapshot().SourceErr() == nil
	}, 10*time.Second, time.Millisecond, "Heal must trigger a sync")
}

func TestSourceBlackHoleBlocksUntilContextOrHeal(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	source.BlackHole()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := source.List(ctx)
		errc <- err
	}()
	require.Eventually(t, func() bool { return source.Lists() == 1 }, 10*time.Second, time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("List returned while black-holed: %v", err)
	default:
	}
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)

	go func() {
		_, err := source.List(context.Background())
		errc <- err
	}()
	require.Eventually(t, func() bool { return source.Lists() == 2 }, 10*time.Second, time.Millisecond)
	source.Heal()
	assert.NoError(t, <-errc)
}

func TestSourceBlackHoleTimesOutTheSync(t *testing.T) {
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, clusterregistrytest.NewFakeBuilder(),
		clusterregistry.WithSourceTimeout(50*time.Millisecond))

	source.BlackHole()
	_, err := syncer.Sync(context.Background())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, []string{"a"}, syncer.Registry().Snapshot().Names(), "the last good state stays")
}
