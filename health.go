package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// HealthState is what the latest probes say of a cluster's client. The zero
// HealthState is HealthUnknown.
type HealthState uint8

// The health states.
const (
	// HealthUnknown: not probed yet, probing is off, or no client.
	HealthUnknown HealthState = iota
	// HealthReady: the API server answers and says it is ready.
	HealthReady
	// HealthNotReady: the API server answers, but with an error status
	// (not ready, forbidden, throttled).
	HealthNotReady
	// HealthUnreachable: no answer (refused, timed out, TLS failure).
	HealthUnreachable
	// HealthUnauthorized: the API server refuses the client's credentials
	// (401). The Syncer re-reads the source, with backoff, to pick up
	// rotated credentials.
	HealthUnauthorized
)

var healthStateNames = [...]string{"Unknown", "Ready", "NotReady", "Unreachable", "Unauthorized"}

// String returns the state's name: "Unknown", "Ready", "NotReady",
// "Unreachable" or "Unauthorized".
func (s HealthState) String() string {
	if int(s) < len(healthStateNames) {
		return healthStateNames[s]
	}
	return fmt.Sprintf("HealthState(%d)", uint8(s))
}

// MarshalText returns the state's name, so that JSON and logs show it.
func (s HealthState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s HealthState) unhealthy() bool {
	return s == HealthNotReady || s == HealthUnreachable || s == HealthUnauthorized
}

// Health is the result of a cluster's probes. The zero Health is that of a
// cluster never probed: HealthUnknown.
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

// A Prober checks a cluster's client. A Builder that is also a Prober of its
// client type can probe its clients (WithHealthCheck); ClientBuilder is one,
// and BuilderFuncs is one when its ProbeFunc is set.
//
// Probe runs outside every lock, under the probe timeout, and must honour
// ctx. It returns nil for a ready cluster; an error wrapping ErrNotReady for a
// server that answers but is not ready; a 401 error from the API server (as
// client-go returns it) for refused credentials; and any other error for an
// unreachable one. It runs during a probe round, so it must not call
// Syncer.Probe, which waits for the round.
type Prober[T any] interface {
	Probe(ctx context.Context, client T) error
}

// Probe asks the API server GET /readyz, or GET /version if it does not serve
// /readyz. Its requests go through while the client fails fast
// (WithoutFailFast): they are how it learns that the cluster answers again.
func (ClientBuilder) Probe(ctx context.Context, c *Client) error { return probeReadyz(ctx, c) }

func probeReadyz(ctx context.Context, c *Client) error {
	ctx = withProbe(ctx) // let through while the client fails fast
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
// concurrency at once, with the Builder's Probe method (the Builder must be a
// Prober of its client type; NewSyncer says so if it is not). Health is in
// ClusterInfo.Health and Registry.Health, and changes are events
// (EventHealthy, EventUnhealthy). Probing never rebuilds a client and never
// blocks a sync. A client that replaces another starts with its health until
// it is probed.
func WithHealthCheck(hc HealthCheck) Option {
	return optionFunc(func(o *options) {
		hc = hc.withDefaults()
		o.healthCheck = &hc
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
	return Health{}
}

// Health returns the health of the cluster called name: HealthUnknown when
// probing is off, before the first probe, or for a cluster with no client.
// For an unknown name the error is that of Get.
func (r *Registry[T]) Health(name string) (Health, error) {
	st := r.load()
	m, ok := st.members[name]
	if !ok {
		_, err := st.get(name)
		return Health{}, err
	}
	if m.h == nil {
		return Health{}, nil
	}
	return m.h.loadHealth(), nil
}

// probed is one client's probe and what it changed.
type probed[T any] struct {
	name       string
	h          *handle[T]
	err        error
	took       time.Duration
	prev, next Health
}

// applyHealth stores each probed client's next health, computed by next from
// its previous health and the probe's error, and queues the events of the
// changes for the subscribers. It returns those events. Before a health is
// stored, it is handed to tell (the library's own fail-fast breaker), so
// that whoever reads Unreachable finds the client failing fast already.
func (r *Registry[T]) applyHealth(results []*probed[T], next func(prev Health, err error) Health, tell func(*probed[T])) []Event {
	r.eventsMu.Lock()
	defer r.eventsMu.Unlock()
	cur := r.load()
	var changes []Event
	for _, p := range results {
		p.prev = p.h.loadHealth()
		p.next = next(p.prev, p.err)
		tell(p)
		p.h.health.Store(&p.next)
		if m := cur.members[p.name]; m == nil || m.h != p.h {
			continue // replaced while it was probed: its health is history
		}
		ev := Event{Name: p.name, Generation: cur.generation, Health: p.next}
		switch {
		case p.next.State == p.prev.State:
			continue
		case p.next.State.unhealthy():
			ev.Type, ev.Err = EventUnhealthy, p.next.Err
		case p.next.State == HealthReady && p.prev.State.unhealthy():
			ev.Type = EventHealthy
		default:
			continue
		}
		changes = append(changes, ev)
	}
	r.emitLocked(cur, changes)
	return changes
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
	// Every client probed is leased, as Registry.Lease does, so that a sync
	// during the round cannot release it.
	leased := s.reg.leaseServing()
	results, changes, err := s.probeLocked(ctx, leased)
	s.probeMu.Unlock()

	// With no lock held: the leases' last Release may release a client, and
	// the logger and Observer are the caller's code.
	for _, l := range leased {
		l.h.unlease()
	}
	s.reportProbes(results, changes)
	return err
}

// probeLocked probes the leased clients and applies the results. s.probeMu
// must be held.
func (s *Syncer[T]) probeLocked(ctx context.Context, leased []namedHandle[T]) ([]*probed[T], []Event, error) {
	hc := *s.opts.healthCheck
	results := make([]*probed[T], len(leased))
	goLimited(len(leased), s.opts.concurrency, func(i int) {
		pctx, cancel := s.withTimeout(ctx, hc.Timeout)
		defer cancel()
		start := s.opts.clock.Now()
		err := s.prober.Probe(pctx, leased[i].h.client)
		results[i] = &probed[T]{name: leased[i].name, h: leased[i].h, err: err, took: s.opts.clock.Since(start)}
	})()
	if ctx.Err() != nil {
		return results, nil, ctx.Err()
	}
	now := s.opts.clock.Now()
	// tellFailFast runs under probeMu, so that a later round's findings
	// cannot be overwritten by this one's; it runs none of the caller's code.
	changes := s.reg.applyHealth(results, func(prev Health, err error) Health {
		return nextHealth(prev, err, now, hc)
	}, s.tellFailFast)
	if s.reauthLocked(results, now) {
		// Credentials may have been rotated in the source: re-read it.
		s.Trigger()
	}
	return results, changes, nil
}

// reauthLocked records the clients that the source refused, and reports
// whether one of them is due a re-read of the source (with backoff, per
// client). s.probeMu must be held.
func (s *Syncer[T]) reauthLocked(results []*probed[T], now time.Time) bool {
	live := make(map[*handle[T]]*reauth, len(results))
	due := false
	for _, p := range results {
		if p.next.State != HealthUnauthorized && (p.err == nil || classify(p.err) != HealthUnauthorized) {
			continue
		}
		ra := s.reauths[p.h]
		if ra == nil {
			ra = &reauth{}
		}
		if !now.Before(ra.next) {
			ra.attempts++
			ra.next = now.Add(s.backoff(ra.attempts))
			due = true
		}
		live[p.h] = ra
	}
	s.reauths = live
	return due
}

// tellFailFast tells a probed client that can fail fast what its probe
// found. The client is still leased. s.probeMu must be held.
func (s *Syncer[T]) tellFailFast(p *probed[T]) {
	if s.opts.noFailFast {
		return
	}
	if ff, ok := any(p.h.client).(failFaster); ok {
		ff.probed(p.err, p.next)
	}
}

// reportProbes tells the Observer and the log about a probe round. No lock
// is held.
func (s *Syncer[T]) reportProbes(results []*probed[T], changes []Event) {
	for _, p := range results {
		s.opts.observer.ProbeDone(p.name, p.took, p.err)
		if p.next.State != p.prev.State {
			s.opts.observer.HealthChanged(p.name, p.prev, p.next)
		}
	}
	for _, ev := range changes {
		kv := []any{"cluster", ev.Name, "health", ev.Health.State}
		if ev.Type == EventUnhealthy {
			s.opts.logger.Error(ev.Err, "Cluster unhealthy", kv...)
		} else {
			s.opts.logger.Info("Cluster healthy", kv...)
		}
	}
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
