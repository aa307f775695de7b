package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Fail-fast settings; WithoutFailFast documents them.
const (
	// failFastTimeouts is how many requests in a row must time out before a
	// client fails fast.
	failFastTimeouts = 3
	// failFastTrial is how often one request of a failing-fast client is let
	// through to see whether the cluster answers again.
	failFastTrial = 5 * time.Second
)

// ErrUnreachable is wrapped by the error of a request that failed fast
// because its cluster is known to be unreachable (an *UnreachableError).
var ErrUnreachable = errors.New("cluster known unreachable")

// An UnreachableError is the error of a request that a *Client failed at
// once, without sending it, because its cluster is known to be unreachable:
// the health check found it Unreachable, or its last requests timed out.
// Match it with errors.As, or ErrUnreachable with errors.Is.
type UnreachableError struct {
	// Name is the cluster's name.
	Name string
	// Since is when the cluster was found unreachable.
	Since time.Time
	// Err is what found it: the probe's error, or the last timed-out
	// request's. It never contains a credential.
	Err error
}

// Error names the cluster and says since when it is unreachable.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cluster %q: unreachable since %s, not asked: %v", e.Name, e.Since.UTC().Format(time.RFC3339), e.Err)
}

// Unwrap returns ErrUnreachable.
func (e *UnreachableError) Unwrap() error { return ErrUnreachable }

// WithoutFailFast turns fail-fast off for the clients the Syncer builds.
//
// By default, a *Client that a Syncer built fails its requests at once, with
// an *UnreachableError, while its cluster is known to be unreachable: from
// the moment a probe (WithHealthCheck) finds it Unreachable, or 3 of its
// requests in a row have timed out (a request its caller cancelled does not
// count). It serves requests again as soon as the cluster answers, whatever
// the status: half-open. ClientBuilder's probes always go through, and the
// first one answered closes the breaker; while no such probe has found the
// cluster Unreachable (probing is off, has not noticed yet, or is a Prober of
// your own, whose requests fail fast like any other), one request every 5s
// (on the Syncer's clock) goes through to find out. So a dashboard
// of a fleet with a dead cluster is not held by it on every load, and sees
// it again as soon as it answers. Clients of other Builders, and clients
// that ClientBuilder builds outside a Syncer, never fail fast.
func WithoutFailFast() Option {
	return optionFunc(func(o *options) { o.noFailFast = true })
}

// failFaster is a client that can fail fast: *Client. The Syncer arms it
// after a build and tells it what each probe found.
type failFaster interface {
	armFailFast(c clock.PassiveClock)
	probed(err error, h Health)
}

func (c *Client) armFailFast(clk clock.PassiveClock) { c.transport.breaker.arm(clk) }
func (c *Client) probed(err error, h Health)         { c.transport.breaker.probed(c.name, err, h) }

// probeKey marks the context of a probe's requests, which a failing-fast
// client lets through: they are how it learns that the cluster answers.
type probeKey struct{}

func withProbe(ctx context.Context) context.Context { return context.WithValue(ctx, probeKey{}, true) }

// breaker fails a client's requests at once while its cluster is known to be
// unreachable. Everything is atomic: the common case, a closed breaker,
// costs a few atomic loads per request and no store.
type breaker struct {
	clock     atomic.Pointer[clock.PassiveClock] // nil: fail-fast is off
	open      atomic.Pointer[UnreachableError]   // nil while requests go through
	timeouts  atomic.Int32                       // requests in a row that timed out
	nextTrial atomic.Int64                       // when one request may go through, in UnixNano on clock
}

func (b *breaker) arm(c clock.PassiveClock) { b.clock.Store(&c) }

// allow returns the error of a request that must fail at once, or nil.
func (b *breaker) allow(req *http.Request) error {
	ue := b.open.Load()
	if ue == nil || req.Context().Value(probeKey{}) != nil {
		return nil
	}
	now := (*b.clock.Load()).Now().UnixNano()
	if next := b.nextTrial.Load(); now >= next && b.nextTrial.CompareAndSwap(next, now+int64(failFastTrial)) {
		return nil // half-open: this one goes, to see whether the cluster answers
	}
	return ue
}

// record learns from a request that was sent: any answer closes the
// breaker; failFastTimeouts timeouts in a row open it.
func (b *breaker) record(name string, req *http.Request, resp *http.Response, err error) {
	if b.clock.Load() == nil {
		return
	}
	if resp != nil {
		b.close()
		return
	}
	if timedOut(req.Context(), err) && b.timeouts.Add(1) >= failFastTimeouts {
		now := (*b.clock.Load()).Now()
		if b.trip(name, now, err) {
			b.nextTrial.Store(now.Add(failFastTrial).UnixNano())
		}
	}
}

// probed learns from a probe: an answer closes the breaker, and a cluster
// that the health check finds Unreachable opens it.
func (b *breaker) probed(name string, err error, h Health) {
	if b.clock.Load() == nil {
		return
	}
	switch {
	case errors.Is(err, ErrUnreachable):
		// A Prober of the caller's own, whose request this client failed
		// fast: it learnt nothing, so trial requests must find out.
		next := (*b.clock.Load()).Now().Add(failFastTrial).UnixNano()
		b.nextTrial.CompareAndSwap(math.MaxInt64, next)
	case err == nil || classify(err) != HealthUnreachable:
		b.close()
	case h.State == HealthUnreachable:
		b.trip(name, h.Since, err)
		// The probes find out when it answers again: no request of a
		// caller's need wait for that.
		b.nextTrial.Store(math.MaxInt64)
	}
}

// close lets requests through again. It writes only what needs it: every
// answered request calls it, and a store to a line that all of a cluster's
// requests share would cost them all.
func (b *breaker) close() {
	if b.timeouts.Load() != 0 {
		b.timeouts.Store(0)
	}
	if b.open.Load() != nil {
		b.open.Store(nil)
	}
}

// trip opens the breaker, unless it is open already: its Since stays that
// of the first failure. It reports whether it opened it.
func (b *breaker) trip(name string, since time.Time, err error) bool {
	return b.open.CompareAndSwap(nil, &UnreachableError{Name: name, Since: since, Err: err})
}

// timedOut reports whether a request failed for want of an answer in time,
// rather than because its caller gave up: a deadline (the request timeout,
// the caller's, a fan-out's) or a network timeout counts, a cancellation
// does not.
func timedOut(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return errors.Is(context.Cause(ctx), context.DeadlineExceeded)
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
