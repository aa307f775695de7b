//go:build unix

package kubeconfig_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

// A kubeconfig replaced by a named pipe would block the read of every poll
// for ever. The watch must refuse it without opening it, keep the file's
// last good content, and List must still return.
func TestNamedPipeIsNeverOpened(t *testing.T) {
	pipe := trusttest.NewTripwire(t)
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	src, clk := newFileSource(t, path, kubeconfig.WithSettle(0))
	require.Len(t, list(t, src), 1)
	w := startWatch(t, src, clk)

	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Symlink(pipe.Path, path))
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load(), "the file became unusable")
	clusters := listPromptly(t, src)
	require.Len(t, clusters, 1, "the last good content stays")
	assert.Equal(t, "https://a.example", clusters[0].Config.Host)
	assert.ErrorContains(t, clusters[0].Err, "not a regular file")
	assert.False(t, pipe.Stop(), "the pipe was opened")
}
