package localcluster_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// echoServer answers every connection by echoing what it reads.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex // protects conns
	conns []net.Conn
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := &echoServer{ln: ln}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Go(func() { _, _ = io.Copy(c, c); _ = c.Close() })
		}
	})
	return e
}

func (e *echoServer) close() {
	_ = e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// roundTrip writes msg on c and reads it back within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyFaults(t *testing.T) {
	defer goleak.VerifyNone(t, leakOptions()...)
	echo := newEchoServer(t)
	defer echo.close()
	p, err := localcluster.NewProxy(echo.ln.Addr().String())
	require.NoError(t, err)
	defer p.Close()

	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Log("forwarding")
	open := dial()
	got, err := roundTrip(open, "hello", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "hello", got)

	t.Log("black hole: open and new connections both go silent")
	p.BlackHole()
	_, err = roundTrip(open, "held", 300*time.Millisecond)
	assert.True(t, isTimeout(err), "want a timeout, got %v", err)
	fresh := dial() // accepted, never answered
	_, err = roundTrip(fresh, "fresh", 300*time.Millisecond)
	assert.True(t, isTimeout(err), "want a timeout, got %v", err)

	t.Log("heal: the held bytes flow on")
	require.NoError(t, p.Heal())
	buf := make([]byte, 4)
	_ = open.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = io.ReadFull(open, buf)
	require.NoError(t, err)
	assert.Equal(t, "held", string(buf))
	buf = make([]byte, 5)
	_ = fresh.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = io.ReadFull(fresh, buf)
	require.NoError(t, err)
	assert.Equal(t, "fresh", string(buf))

	t.Log("delay: each direction waits")
	p.SetDelay(150 * time.Millisecond)
	start := time.Now()
	_, err = roundTrip(open, "slow", 2*time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.NoError(t, p.Heal())

	t.Log("refuse: the port refuses, then listens again at the same address")
	require.NoError(t, p.Refuse())
	_, err = net.Dial("tcp", p.Addr())
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "want connection refused, got %v", err)
	got, err = roundTrip(open, "still", time.Second)
	require.NoError(t, err, "open connections go on")
	assert.Equal(t, "still", got)
	require.NoError(t, p.Heal())
	got, err = roundTrip(dial(), "again", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "again", got)

	t.Log("backend down: refused like the backend itself")
	require.NoError(t, p.SetBackendDown(true))
	_, err = net.Dial("tcp", p.Addr())
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "want connection refused, got %v", err)
	require.NoError(t, p.Heal())
	_, err = net.Dial("tcp", p.Addr())
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "Heal does not undo a stopped backend: %v", err)
	require.NoError(t, p.SetBackendDown(false))

	t.Log("backend gone without notice: the connection is reset")
	echo.close()
	// The reset can come before the dial returns, or after.
	gone, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_, err = roundTrip(gone, "gone", time.Second)
		_ = gone.Close()
	}
	require.Error(t, err)
	assert.False(t, isTimeout(err), "want a reset or EOF, got %v", err)

	require.NoError(t, p.Close())
	_, err = net.Dial("tcp", p.Addr())
	assert.Error(t, err)
}
