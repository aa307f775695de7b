package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// HealthState is what the latest probes say of a cluster's client.
type HealthState string

// The health states.
const (
	// HealthUnknown: not probed yet, or probing is off.
	HealthUnknown HealthState = "Unknown"
	// HealthReady: the API server answers and says it is ready.
	HealthReady HealthState = "Ready"
	// HealthNotReady: the API server answers, but with an error status
	// (not ready, forbidden, throttled).
	HealthNotReady HealthState = "NotReady"
	// HealthUnreachable: no answer (refused, timed out, TLS failure).
	HealthUnreachable HealthState = "Unreachable"
	// HealthUnauthorized: the API server refuses the client's credentials
	// (401). The Syncer re-reads the source, with backoff, to pick up
	// rotated credentials.
	HealthUnauthorized HealthState = "Unauthorized"
)

func (s HealthState) unhealthy() bool {
	return s == HealthNotReady || s == HealthUnreachable || s == HealthUnauthorized
}

// Health is the result of a cluster's probes. The zero Health is
// HealthUnknown.
type Health struct {
	State HealthState
	// Since is when State last changed.
	Since time.Time
	// LastProbe is when the latest probe finished.
	LastProbe time.Time
	// Err is the latest probe's error, nil if it succeeded. It may be set
	// while State is still HealthReady, until FailureThreshold probes in a
	// row have failed.
	Err error
	// Failures and Successes count the latest run of failed or successful
	// probes.
	Failures, Successes int
}

// ErrNotReady is wrapped by a probe error that means "the server answered,
// but is not ready". Probers return it to report HealthNotReady.
var ErrNotReady = errors.New("not ready")

// A Prober checks a cluster's client. Probe runs outside every lock, under
// the probe timeout, and must honour ctx. It returns nil for a ready
// cluster; an error wrapping ErrNotReady for a server that answers but is not
// ready; a 401 error from the API server (as client-go returns it) for
// refused credentials; and any other error for an unreachable one.
type Prober[T any] interface {
	Probe(ctx context.Context, client T) error
}

// ProberFunc adapts a function to a Prober.
type ProberFunc[T any] func(ctx context.Context, client T) error

// Probe calls f(ctx, client).
func (f ProberFunc[T]) Probe(ctx context.Context, client T) error { return f(ctx, client) }

// ReadyzProber probes a *Client: GET /readyz, or GET /version from servers
// that do not serve /readyz.
var ReadyzProber Prober[*Client] = ProberFunc[*Client](probeReadyz)

func probeReadyz(ctx context.Context, c *Client) error {
	rc := c.Discovery().RESTClient()
	err := rc.Get().AbsPath("/readyz").Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		err = rc.Get().AbsPath("/version").Do(ctx).Error()
	}
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case apierrors.IsUnauthorized(err):
		return err
	case errors.As(err, &status) && status.Status().Code >= http.StatusBadRequest:
		// It answered: an error status (500, 503, 403, 429) is not "unreachable".
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	default:
		return err
	}
}

// HealthCheck configures probing (WithHealthCheck). Zero fields take the
// defaults.
type HealthCheck struct {
	// Interval between probes of a cluster. Default: 10s.
	Interval time.Duration
	// Timeout of one probe. Default: 5s.
	Timeout time.Duration
	// FailureThreshold is how many failed probes in a row turn a ready
	// cluster unhealthy. Default: 3.
	FailureThreshold int
	// SuccessThreshold is how many successful probes in a row turn an
	// unhealthy cluster ready. Default: 1.
	SuccessThreshold int
}

func (hc HealthCheck) withDefaults() HealthCheck {
	if hc.Interval == 0 {
		hc.Interval = 10 * time.Second
	}
	if hc.Timeout == 0 {
		hc.Timeout = 5 * time.Second
	}
	if hc.FailureThreshold == 0 {
		hc.FailureThreshold = 3
	}
	if hc.SuccessThreshold == 0 {
		hc.SuccessThreshold = 1
	}
	return hc
}

func (hc HealthCheck) validate() error {
	var errs []error
	if hc.Interval < 0 || hc.Timeout < 0 {
		errs = append(errs, errors.New("health check interval and timeout must not be negative"))
	}
	if hc.FailureThreshold < 0 || hc.SuccessThreshold < 0 {
		errs = append(errs, errors.New("health check thresholds must not be negative"))
	}
	return errors.Join(errs...)
}

// WithHealthCheck turns on probing of every cluster that has a client: Run
// probes them on hc.Interval, outside every lock, at most the build
// concurrency at once. Health is in ClusterInfo.Health and Registry.Health,
// and changes are events (EventHealthy, EventUnhealthy). Probing never
// rebuilds a client and never blocks a sync. p must be a Prober of the
// Syncer's client type; for *Client, use ReadyzProber.
func WithHealthCheck[T any](p Prober[T], hc HealthCheck) Option {
	return optionFunc(func(o *options) {
		o.prober, o.proberSet = p, true
		o.healthCheck = hc.withDefaults()
	})
}

// classify maps a failed probe's error to a health state.
func classify(err error) HealthState {
	switch {
	case apierrors.IsUnauthorized(err):
		return HealthUnauthorized
	case errors.Is(err, ErrNotReady):
		return HealthNotReady
	default:
		return HealthUnreachable
	}
}

// nextHealth applies one probe result to prev under the thresholds of hc.
func nextHealth(prev Health, err error, now time.Time, hc HealthCheck) Health {
	next := prev
	next.LastProbe, next.Err = now, err
	state := prev.State
	if err == nil {
		next.Successes, next.Failures = prev.Successes+1, 0
		if prev.State == HealthUnknown || next.Successes >= hc.SuccessThreshold {
			state = HealthReady
		}
	} else {
		next.Failures, next.Successes = prev.Failures+1, 0
		switch {
		case prev.State == HealthUnknown || prev.State.unhealthy():
			// Already failing (or nothing to protect): the latest cause wins.
			state = classify(err)
		case next.Failures >= hc.FailureThreshold:
			state = classify(err)
		}
	}
	if state != prev.State {
		next.State, next.Since = state, now
	}
	return next
}

// loadHealth returns h's current health.
func (h *handle[T]) loadHealth() Health {
	if p := h.health.Load(); p != nil {
		return *p
	}
	return Health{State: HealthUnknown}
}

// Health returns the health of the cluster called name: HealthUnknown when
// probing is off, before the first probe, or for a cluster with no client.
// For an unknown name the error wraps ErrClusterNotFound.
func (r *Registry[T]) Health(name string) (Health, error) {
	st := r.load()
	m, ok := st.members[name]
	if !ok {
		return Health{}, fmt.Errorf("cluster %q: %w", name, ErrClusterNotFound)
	}
	if m.h == nil {
		return Health{State: HealthUnknown}, nil
	}
	return m.h.loadHealth(), nil
}

// reauth tracks the re-reads of the source that 401s asked for, per client.
type reauth struct {
	attempts int
	next     time.Time
}

// Probe probes every cluster that has a client, once, now, and waits for the
// results. Run calls it on the health check's interval; a caller may call it
// too (a "check now" button). Without WithHealthCheck it returns an error.
// Probe rounds do not overlap: a call waits for one in progress.
func (s *Syncer[T]) Probe(ctx context.Context) error {
	if s.prober == nil {
		return errors.New("clusterregistry: no health check configured (WithHealthCheck)")
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()

	type target struct {
		name string
		h    *handle[T]
		err  error
	}
	var targets []*target
	// Lease every client, as Registry.Lease does, so that a sync during the
	// probes cannot release a client that is being probed.
	s.reg.mu.RLock()
	for _, m := range s.reg.cur.sorted {
		if m.h != nil {
			m.h.leases.Add(1)
			targets = append(targets, &target{name: m.name, h: m.h})
		}
	}
	s.reg.mu.RUnlock()
	defer func() {
		for _, tg := range targets {
			tg.h.unlease()
		}
	}()
	hc := s.opts.healthCheck
	sem := make(chan struct{}, s.opts.concurrency)
	var wg sync.WaitGroup
	for _, tg := range targets {
		sem <- struct{}{}
		wg.Add(1)
		// One goroutine per probe, bounded by sem, so a slow cluster holds
		// up no other; Probe waits for all of them.
		go func() {
			defer func() { <-sem; wg.Done() }()
			pctx, cancel := s.withTimeout(ctx, hc.Timeout)
			defer cancel()
			start := s.opts.clock.Now()
			tg.err = s.prober.Probe(pctx, tg.h.client)
			s.opts.observer.ProbeDone(tg.name, s.opts.clock.Since(start), tg.err)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	now := s.opts.clock.Now()
	live := make(map[*handle[T]]*reauth, len(targets))
	wantSync := false
	var changes []Event
	var observed []func()

	s.reg.eventsMu.Lock()
	cur := s.reg.load()
	for _, tg := range targets {
		prev := tg.h.loadHealth()
		next := nextHealth(prev, tg.err, now, hc)
		tg.h.health.Store(&next)

		if next.State == HealthUnauthorized || (tg.err != nil && classify(tg.err) == HealthUnauthorized) {
			ra := s.reauths[tg.h]
			if ra == nil {
				ra = &reauth{}
			}
			if !now.Before(ra.next) {
				ra.attempts++
				ra.next = now.Add(s.backoff(ra.attempts))
				wantSync = true
			}
			live[tg.h] = ra
		}
		if next.State == prev.State {
			continue
		}
		observed = append(observed, func() { s.opts.observer.HealthChanged(tg.name, prev, next) })
		if m := cur.members[tg.name]; m == nil || m.h != tg.h {
			continue // replaced while it was probed: its health is history
		}
		ev := Event{Cluster: tg.name, Generation: cur.generation, Health: next}
		switch {
		case next.State.unhealthy():
			ev.Type, ev.Err = EventUnhealthy, next.Err
		case next.State == HealthReady && prev.State.unhealthy():
			ev.Type = EventHealthy
		default:
			continue
		}
		changes = append(changes, ev)
	}
	s.reg.emitLocked(changes)
	s.reg.eventsMu.Unlock()
	s.reauths = live

	for _, ev := range changes {
		kv := []any{"cluster", ev.Cluster, "health", ev.Health.State}
		if ev.Type == EventUnhealthy {
			s.opts.logger.Error(ev.Err, "Cluster unhealthy", kv...)
		} else {
			s.opts.logger.Info("Cluster healthy", kv...)
		}
	}
	for _, f := range observed {
		f()
	}
	if wantSync {
		// Credentials may have been rotated in the source: re-read it.
		s.Trigger()
	}
	return nil
}

// probeLoop probes on the health check's interval until ctx is done.
func (s *Syncer[T]) probeLoop(ctx context.Context) {
	for {
		if err := s.Probe(ctx); err != nil && ctx.Err() == nil {
			s.opts.logger.Error(err, "Probing failed")
		}
		timer := s.opts.clock.NewTimer(s.opts.healthCheck.Interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		}
	}
}
