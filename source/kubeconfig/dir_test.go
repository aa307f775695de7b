package kubeconfig_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

func newDir(t *testing.T, dir string, opts ...kubeconfig.Option) (*kubeconfig.Dir, *fakeclock.FakeClock) {
	t.Helper()
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	opts = append([]kubeconfig.Option{
		kubeconfig.WithClock(clk),
		kubeconfig.WithPollInterval(interval),
		kubeconfig.WithSettle(settle),
	}, opts...)
	d, err := kubeconfig.NewDir(dir, opts...)
	require.NoError(t, err)
	return d, clk
}

func TestDirFilesComeAndGo(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one.yaml"), kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	writeFile(t, filepath.Join(dir, ".hidden"), kubeconfigYAML("", ctxSpec{"hidden", "https://h.example"}))
	writeFile(t, filepath.Join(dir, "one.yaml~"), kubeconfigYAML("", ctxSpec{"backup", "https://b.example"}))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o700))
	d, clk := newDir(t, dir)
	assert.Equal(t, []got{{Name: "a", Host: "https://a.example"}}, summarize(t, list(t, d)))

	w := startWatch(t, d, clk)
	steps := []struct {
		name string
		give func()
		want []got
	}{
		{
			name: "added",
			give: func() {
				writeAtomically(t, filepath.Join(dir, "two.yaml"), kubeconfigYAML("", ctxSpec{"b", "https://b.example"}, ctxSpec{"c", "https://c.example"}))
			},
			want: []got{{Name: "a", Host: "https://a.example"}, {Name: "b", Host: "https://b.example"}, {Name: "c", Host: "https://c.example"}},
		},
		{
			name: "changed",
			give: func() {
				writeFile(t, filepath.Join(dir, "two.yaml"), kubeconfigYAML("", ctxSpec{"b", "https://b2.example"}))
			},
			want: []got{{Name: "a", Host: "https://a.example"}, {Name: "b", Host: "https://b2.example"}},
		},
		{
			name: "removed",
			give: func() { require.NoError(t, os.Remove(filepath.Join(dir, "one.yaml"))) },
			want: []got{{Name: "b", Host: "https://b2.example"}},
		},
	}
	for i, s := range steps {
		s.give()
		w.poll()
		w.poll()
		assert.EqualValues(t, i+1, w.changes.Load(), s.name)
		assert.Equal(t, s.want, summarize(t, list(t, d)), s.name)
	}
}

func TestDirNameClashIsAnErrorForThatNameOnly(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	writeFile(t, one, kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}, ctxSpec{"shared", "https://s1.example"}))
	writeFile(t, two, kubeconfigYAML("", ctxSpec{"b", "https://b.example"}, ctxSpec{"shared", "https://s2.example"}))
	d, _ := newDir(t, dir)
	clusters := list(t, d)
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a.example", Default: true},
		{Name: "b", Host: "https://b.example"},
		{Name: "shared", Err: one + "|contexts[shared].name"},
	}, summarize(t, clusters))
	assert.ErrorContains(t, clusters[2].Err, `cluster "shared" is also defined by `+two)
}

// TestDirNameClashNamesEveryContext renames a file's current-context onto a
// name that the file and another file also define: one error names all
// three contexts, and no file's current-context makes it the default; only
// WithDefault does.
func TestDirNameClashNamesEveryContext(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	writeFile(t, one, kubeconfigYAML("old-shared", ctxSpec{"old-shared", "https://o.example"}, ctxSpec{"shared", "https://s1.example"}))
	writeFile(t, two, kubeconfigYAML("", ctxSpec{"shared", "https://s2.example"}))
	rename := kubeconfig.WithRename(func(c string) string { return strings.TrimPrefix(c, "old-") })

	d, _ := newDir(t, dir, rename)
	clusters := list(t, d)
	assert.Equal(t, []got{{Name: "shared", Err: one + "|contexts[old-shared].name"}}, summarize(t, clusters))
	assert.EqualError(t, clusters[0].Err, one+`: field contexts[old-shared].name: cluster "shared" is also defined by `+
		"field contexts[shared].name; "+two+", field contexts[shared].name")
	assert.Nil(t, clusters[0].Config)

	d, _ = newDir(t, dir, rename, kubeconfig.WithDefault("shared"))
	assert.Equal(t, []got{{Name: "shared", Default: true, Err: one + "|contexts[old-shared].name"}}, summarize(t, list(t, d)))
}

func TestDirWithDefault(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one"), kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}))
	writeFile(t, filepath.Join(dir, "two"), kubeconfigYAML("b", ctxSpec{"b", "https://b.example"}))
	d, _ := newDir(t, dir)
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a.example", Default: true},
		{Name: "b", Host: "https://b.example", Default: true},
	}, summarize(t, list(t, d)), "every file's current-context")

	d, _ = newDir(t, dir, kubeconfig.WithDefault("b"))
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a.example"},
		{Name: "b", Host: "https://b.example", Default: true},
	}, summarize(t, list(t, d)))
}

func TestDirBrokenFile(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	writeFile(t, one, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	d, clk := newDir(t, dir)
	require.Len(t, list(t, d), 1)

	// Broken after being good: its clusters stay, with the error.
	writeFile(t, one, "clusters: [")
	list(t, d)
	clk.Step(settle)
	clusters := list(t, d)
	assert.Equal(t, []got{{Name: "a", Err: one + "|kubeconfig"}}, summarize(t, clusters))
	assert.Equal(t, "https://a.example", clusters[0].Config.Host)

	// A new file that never parsed is an entry of its own, with the error;
	// the other file's clusters carry on.
	writeFile(t, two, "clusters: [")
	list(t, d)
	clk.Step(settle)
	assert.Equal(t, []got{{Name: "a", Err: one + "|kubeconfig"}, {Name: "two", Err: two + "|kubeconfig"}}, summarize(t, list(t, d)))

	require.NoError(t, os.Remove(two))
	list(t, d)
	clk.Step(settle)
	assert.Equal(t, []got{{Name: "a", Err: one + "|kubeconfig"}}, summarize(t, list(t, d)))
}

func TestDirUnreadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	d, err := kubeconfig.NewDir(dir)
	require.NoError(t, err)
	_, err = d.List(context.Background())
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorContains(t, err, dir)

	_, err = kubeconfig.NewDir("")
	assert.Error(t, err)
}

func TestDirFollowsAMountedConfigMap(t *testing.T) {
	// The layout the kubelet makes for a ConfigMap or Secret volume: files
	// are symlinks through ..data, which is swapped atomically.
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2024_01_01")
	require.NoError(t, os.Mkdir(v1, 0o700))
	writeFile(t, filepath.Join(v1, "prod"), kubeconfigYAML("", ctxSpec{"prod", "https://p1.example"}))
	require.NoError(t, os.Symlink(filepath.Base(v1), filepath.Join(dir, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "prod"), filepath.Join(dir, "prod")))
	d, clk := newDir(t, dir)
	assert.Equal(t, []got{{Name: "prod", Host: "https://p1.example"}}, summarize(t, list(t, d)))

	v2 := filepath.Join(dir, "..2024_01_02")
	require.NoError(t, os.Mkdir(v2, 0o700))
	writeFile(t, filepath.Join(v2, "prod"), kubeconfigYAML("", ctxSpec{"prod", "https://p2.example"}))
	require.NoError(t, os.Symlink(filepath.Base(v2), filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	list(t, d)
	clk.Step(settle)
	assert.Equal(t, []got{{Name: "prod", Host: "https://p2.example"}}, summarize(t, list(t, d)))
}
