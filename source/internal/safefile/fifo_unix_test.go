//go:build unix

package safefile

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
)

// TestNamedPipeIsRefusedWithoutBlocking: Read and Check of a named pipe with
// no writer return an error at once instead of waiting for a writer.
func TestNamedPipeIsRefusedWithoutBlocking(t *testing.T) {
	fifo := trusttest.NamedPipe(t)
	err := trusttest.Within(t, fifo, func() error { _, err := Read(fifo, 1<<10); return err })
	assert.EqualError(t, err, fifo+" is not a regular file")
	err = trusttest.Within(t, fifo, func() error { return Check(fifo) })
	assert.EqualError(t, err, fifo+" is not a regular file")
}

// TestOpenNonblockOfANamedPipe covers a path that is replaced by a named pipe
// between Open's check of the path and its open: the open returns at
// once, and the check of the open file refuses it.
func TestOpenNonblockOfANamedPipe(t *testing.T) {
	fifo := trusttest.NamedPipe(t)
	type result struct {
		fi  os.FileInfo
		err error
	}
	r := trusttest.Within(t, fifo, func() result {
		fh, err := openNonblock(fifo)
		if err != nil {
			return result{err: err}
		}
		defer fh.Close()
		fi, err := fh.Stat()
		return result{fi, err}
	})
	require.NoError(t, r.err)
	assert.Equal(t, os.ModeNamedPipe, r.fi.Mode().Type())
}
