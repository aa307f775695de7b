package kubeconfig_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

const caConfig = `
clusters:
- {name: c, cluster: {server: "https://c.example", certificate-authority: ca.crt}}
contexts:
- {name: x, context: {cluster: c, user: u}}
users:
- {name: u, user: {token: tok-s3cr3t}}
`

// TestCertificateChangeBeforeTheWatchsFirstLookIsReported: a certificate
// rotated between a List, which read it, and the watch's first poll is a
// change, since the watch compares with what List read.
func TestCertificateChangeBeforeTheWatchsFirstLookIsReported(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	writeFile(t, ca, "ca-one")
	path := filepath.Join(dir, "config")
	writeFile(t, path, caConfig)
	src, clk := newFileSource(t, path)
	require.Equal(t, []byte("ca-one"), list(t, src)[0].Config.CAData)

	writeFile(t, ca, "ca-two")
	w := startWatch(t, src, clk)
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load(), "the rotation is reported")
	assert.Equal(t, []byte("ca-two"), list(t, src)[0].Config.CAData)
}

// rewriteKeepingTimes writes content over path in place, then sets its
// modification time back to mtime, as cp -p, rsync -t and tar x do.
func rewriteKeepingTimes(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	writeFile(t, path, content)
	require.NoError(t, os.Chtimes(path, mtime, mtime))
}

// TestSameSizeRewriteWithAnOldTimeIsSeen: size and an old modification time
// that stay the same prove nothing; the inode's change time does.
func TestSameSizeRewriteWithAnOldTimeIsSeen(t *testing.T) {
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	t.Run("kubeconfig", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		rewriteKeepingTimes(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}), old)
		src, clk := newFileSource(t, path, kubeconfig.WithSettle(0))
		require.Equal(t, "https://a.example", list(t, src)[0].Config.Host)

		rewriteKeepingTimes(t, path, kubeconfigYAML("", ctxSpec{"a", "https://b.example"}), old)
		clk.Step(time.Second)
		assert.Equal(t, "https://b.example", list(t, src)[0].Config.Host)
	})
	t.Run("certificate", func(t *testing.T) {
		dir := t.TempDir()
		ca := filepath.Join(dir, "ca.crt")
		rewriteKeepingTimes(t, ca, "ca-one", old)
		path := filepath.Join(dir, "config")
		writeFile(t, path, caConfig)
		src, clk := newFileSource(t, path)
		require.Equal(t, []byte("ca-one"), list(t, src)[0].Config.CAData)
		w := startWatch(t, src, clk)
		w.poll()
		require.Zero(t, w.changes.Load())

		rewriteKeepingTimes(t, ca, "ca-two", old)
		w.poll()
		assert.EqualValues(t, 1, w.changes.Load())
		assert.Equal(t, []byte("ca-two"), list(t, src)[0].Config.CAData)
	})
}

// TestDirFileThatNeverParsedFreezesNoOtherFile: a broken file that was never
// good is an entry with an error, named after the file; the other files'
// changes come through.
func TestDirFileThatNeverParsedFreezesNoOtherFile(t *testing.T) {
	dir := t.TempDir()
	one, two, three := filepath.Join(dir, "one"), filepath.Join(dir, "two.yaml"), filepath.Join(dir, "three")
	writeFile(t, one, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	writeFile(t, two, "clusters: [\n  token: tok-s3cr3t")
	d, clk := newDir(t, dir)
	clusters := list(t, d)
	assertNoSecret(t, clusters, nil)
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a.example"},
		{Name: "two.yaml", Err: two + "|kubeconfig"},
	}, summarize(t, clusters), "from the first List on")

	writeFile(t, three, kubeconfigYAML("", ctxSpec{"c", "https://c.example"}))
	list(t, d)
	clk.Step(settle)
	clusters = list(t, d)
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a.example"},
		{Name: "c", Host: "https://c.example"},
		{Name: "two.yaml", Err: two + "|kubeconfig"},
	}, summarize(t, clusters), "a new good file next to the broken one is served")
	assert.Nil(t, clusters[2].Config)

	writeFile(t, two, kubeconfigYAML("", ctxSpec{"b", "https://b.example"}))
	list(t, d)
	clk.Step(settle)
	assert.Equal(t, []string{"a", "b", "c"}, names(list(t, d)), "fixed: the file's entry gives way to its contexts")
}

// TestDirBrokenFileShowsInTheSyncer: the entry of a file that never parsed
// reaches the Syncer's registry as an error, and the other clusters are
// served.
func TestDirBrokenFileShowsInTheSyncer(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one"), kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	writeFile(t, filepath.Join(dir, "broken"), "users: 42\n")
	d, _ := newDir(t, dir)
	syncer, err := clusterregistry.NewSyncer(d, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
	})
	require.NoError(t, err)
	_, err = syncer.Sync(context.Background())
	require.NoError(t, err)
	reg := syncer.Registry()
	assert.Equal(t, []string{"a", "broken"}, reg.Snapshot().Names(), "the broken file is known, by its name")
	h, err := reg.Get("a")
	require.NoError(t, err)
	assert.Equal(t, "https://a.example", h)
	_, err = reg.Get("broken")
	assert.Error(t, err, "with no client")
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, reg.Snapshot().Err("broken"), &fe)
	assert.Equal(t, filepath.Join(dir, "broken"), fe.Location)
}
