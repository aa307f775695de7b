package controllerruntime

import (
	"context"
	"net"
	"sync"
	"time"
)

// connTracker dials a cluster's connections and closes them all on release.
// Closing only idle connections is not enough: the watch of an informer that
// has just stopped ends its stream a moment later, and its connection would
// then stay open with nobody left to close it. Release runs once every
// informer has stopped, so whatever is still open belongs to nobody.
type connTracker struct {
	dial0 func(ctx context.Context, network, address string) (net.Conn, error)

	mu       sync.Mutex // protects conns and released
	conns    map[*trackedConn]struct{}
	released bool
}

// newConnTracker tracks the connections of dial, or of a dialer like
// client-go's if dial is nil.
func newConnTracker(dial func(ctx context.Context, network, address string) (net.Conn, error)) *connTracker {
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second} // client-go's
		dial = d.DialContext
	}
	return &connTracker{dial0: dial, conns: make(map[*trackedConn]struct{})}
}

// dial is the cluster's rest.Config Dial; a config with its own Dial also
// stays out of client-go's shared transport cache.
func (t *connTracker) dial(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := t.dial0(ctx, network, address)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	released := t.released
	if !released {
		t.conns[tc] = struct{}{}
	}
	t.mu.Unlock()
	if released {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

// release closes every connection, and any dialled from now on.
func (t *connTracker) release() {
	t.mu.Lock()
	t.released = true
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}
