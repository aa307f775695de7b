package localcluster

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 that forwards every connection to one
// backend address and can fail on demand. Clients reach a cluster through its
// Proxy (the kubeconfigs point at it), so a test can cut or slow the path to
// an API server without touching the server. TLS passes through untouched.
//
// A Proxy is safe for concurrent use. Its goroutines run until Close.
type Proxy struct {
	addr    string // fixed for the Proxy's lifetime, across Refuse and Heal
	backend string
	closing chan struct{} // closed by Close

	mu          sync.Mutex    // protects every field below
	ln          net.Listener  // nil while refusing
	refuse      bool          // the Refuse fault
	backendDown bool          // see SetBackendDown
	gate        chan struct{} // closedGate while forwarding; open while black-holed
	delay       time.Duration
	conns       map[net.Conn]struct{}
	closed      bool

	wg sync.WaitGroup // the accept loops and every connection's goroutines
}

// closedGate is the gate of a Proxy that forwards: a receive never blocks.
var closedGate = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// NewProxy listens on a free port of 127.0.0.1 and forwards to backend
// (host:port). It starts forwarding at once; Close stops it.
func NewProxy(backend string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		addr:    ln.Addr().String(),
		backend: backend,
		closing: make(chan struct{}),
		gate:    closedGate,
		conns:   make(map[net.Conn]struct{}),
	}
	p.ln = ln
	p.wg.Go(func() { p.acceptLoop(ln) })
	return p, nil
}

// Addr returns the address clients connect to, such as 127.0.0.1:40123. It
// stays the same for the Proxy's lifetime.
func (p *Proxy) Addr() string { return p.addr }

// Connections returns how many sockets the Proxy holds open: a forwarded
// connection counts two (its client's side and the backend's), a connection
// waiting out a black hole one. Zero means no client holds a connection
// through it.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Refuse closes the listening socket, so that new connections are refused
// as by a host with nothing on the port; open connections go on. Heal
// listens again on the same port.
func (p *Proxy) Refuse() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = true
	return p.listenLocked()
}

// SetBackendDown tells the Proxy whether its backend is down on purpose (a
// stopped API server). While it is, the Proxy refuses connections as the
// backend's own port would, rather than accepting and resetting them; a
// client sees the same error through the Proxy as without it.
func (p *Proxy) SetBackendDown(down bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backendDown = down
	return p.listenLocked()
}

// listenLocked opens or closes the listener as refuse and backendDown say.
func (p *Proxy) listenLocked() error {
	want := !p.refuse && !p.backendDown && !p.closed
	switch {
	case want && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return err
		}
		p.ln = ln
		p.wg.Go(func() { p.acceptLoop(ln) })
	case !want && p.ln != nil:
		err := p.ln.Close()
		p.ln = nil
		return err
	}
	return nil
}

// BlackHole makes the path silent: new connections are accepted and never
// answered, and open connections stop moving bytes in both directions, as in
// a network partition. Clients see timeouts, not errors. Heal undoes it; the
// bytes held meanwhile then flow on.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == closedGate {
		p.gate = make(chan struct{})
	}
}

// SetDelay holds every chunk of bytes for d before forwarding it, in both
// directions, so a request and its response each arrive at least d late.
// Zero removes the delay.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Heal ends BlackHole, SetDelay and Refuse. (A backend that is down stays
// refused until SetBackendDown(false).)
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = 0
	if p.gate != closedGate {
		close(p.gate)
		p.gate = closedGate
	}
	p.refuse = false
	return p.listenLocked()
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines to end. Calls after the first do nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	var err error
	if p.ln != nil {
		err = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept failure (out of file descriptors): back off
			// briefly rather than spin.
			select {
			case <-p.closing:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			_ = c.Close()
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track records c so that Close can close it; false once closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// pass blocks while the proxy is black-holed and then sleeps the delay. It
// returns false when the proxy is closing.
func (p *Proxy) pass() bool {
	p.mu.Lock()
	gate, delay := p.gate, p.delay
	p.mu.Unlock()
	select {
	case <-gate:
	case <-p.closing:
		return false
	}
	if delay <= 0 {
		return true
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.closing:
		return false
	}
}

func (p *Proxy) serve(client net.Conn) {
	// A new connection waits out a black hole before the backend is dialled,
	// so it hangs even when the backend is down.
	if !p.pass() {
		p.untrack(client)
		return
	}
	backend, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
	if err != nil {
		// The backend is down: reset the client's connection, which is as
		// close as a proxy gets to "connection refused".
		if tc, ok := client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		p.untrack(client)
		return
	}
	if !p.track(backend) {
		_ = backend.Close()
		p.untrack(client)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.copy(backend, client) })
	p.copy(client, backend)
	wg.Wait()
	p.untrack(client)
	p.untrack(backend)
}

// copy forwards src to dst chunk by chunk through pass, and half-closes dst
// when src ends. When dst cannot be written, it closes src so that the copy
// in the other direction ends too.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite()
			} else {
				_ = dst.Close()
			}
			return
		}
	}
}
