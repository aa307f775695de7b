//go:build unix

package safefile

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mkfifo makes a named pipe that nobody writes to: an open of it for reading
// blocks unless it is non-blocking.
func mkfifo(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	return path
}

// within returns f's result, or fails the test if f has not returned within
// a bound. A read that waits on fifo is then released (a non-blocking open
// for writing succeeds while a reader waits), so that a regression fails the
// test rather than hanging it.
func within[T any](t *testing.T, fifo string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case v := <-done:
		return v
	case <-ctx.Done():
	}
	t.Errorf("still blocked on the named pipe %s after 10s", fifo)
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
	return <-done
}

// TestNamedPipeIsRefusedWithoutBlocking: Read and Check of a named pipe with
// no writer return an error at once instead of waiting for a writer.
func TestNamedPipeIsRefusedWithoutBlocking(t *testing.T) {
	fifo := mkfifo(t, "pipe")
	err := within(t, fifo, func() error { _, err := Read(fifo, 1<<10); return err })
	assert.EqualError(t, err, fifo+" is not a regular file")
	err = within(t, fifo, func() error { return Check(fifo) })
	assert.EqualError(t, err, fifo+" is not a regular file")
}

// TestOpenNonblockOfANamedPipe covers a path that is replaced by a named pipe
// between Open's check of the path and its open: the open returns at
// once, and the check of the open file refuses it.
func TestOpenNonblockOfANamedPipe(t *testing.T) {
	fifo := mkfifo(t, "pipe")
	type result struct {
		fi  os.FileInfo
		err error
	}
	r := within(t, fifo, func() result {
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
