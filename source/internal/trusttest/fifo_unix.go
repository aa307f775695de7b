//go:build unix

package trusttest

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A Tripwire is a named pipe that tells whether anyone opened it for reading.
// A read of it would block, so code under test that opens it is caught in
// the act: the Tripwire's own writer is what lets that open return.
type Tripwire struct {
	// Path is the pipe's path.
	Path string

	opened atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// NewTripwire makes a named pipe in a temporary directory and watches it
// until Stop or the end of the test.
func NewTripwire(t testing.TB) *Tripwire {
	t.Helper()
	w := &Tripwire{Path: filepath.Join(t.TempDir(), "client.key"), stop: make(chan struct{})}
	require.NoError(t, syscall.Mkfifo(w.Path, 0o600))
	w.wg.Add(1)
	// Polls until Stop: a non-blocking open for writing succeeds only while a
	// reader has the pipe open (ENXIO otherwise).
	go func() {
		defer w.wg.Done()
		for {
			f, err := os.OpenFile(w.Path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err == nil {
				w.opened.Store(true)
				f.Close()
			} else if !errors.Is(err, syscall.ENXIO) {
				return
			}
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

// Stop ends the watch and reports whether anyone opened the pipe for reading.
// It may be called more than once.
func (w *Tripwire) Stop() bool {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
	return w.opened.Load()
}

// NamedPipe makes a named pipe that nobody writes to, in a directory of the
// test's own: an open of it for reading blocks unless it is non-blocking.
func NamedPipe(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pipe")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	return path
}

// Within returns f's result, or fails the test if f has not returned within
// 10s. A read that waits on the named pipe at fifo is then released (a
// non-blocking open for writing succeeds while a reader waits), so that a
// regression fails the test rather than hanging it.
func Within[T any](t testing.TB, fifo string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case v := <-done:
		return v
	case <-timer.C:
	}
	t.Errorf("still blocked on the named pipe %s after 10s", fifo)
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
	return <-done
}
