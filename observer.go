package clusterregistry

import "time"

// An Observer is told what the Syncer does, for metrics and tracing. Its
// methods are called with no lock of the Syncer or the Registry held, from
// the goroutine that ran the sync or the probe round (BuildDone and ProbeDone
// in a batch once it ends), and must return quickly. They may call Sync,
// Probe, Trigger and any Registry method, but not Close, and must not wait
// for Run to return: both wait for the callback. Calls from concurrent Sync
// (or Probe) calls may interleave; the Registry's events are the ordered
// record. Embed NopObserver to implement only some of them. The examples
// module builds Prometheus metrics on it.
type Observer interface {
	// SyncDone is called after every sync with its report, and the source's
	// error (nil if it was listed).
	SyncDone(report SyncReport, err error)
	// BuildDone is called after every build of a cluster's client.
	BuildDone(cluster string, duration time.Duration, err error)
	// ProbeDone is called after every health probe.
	ProbeDone(cluster string, duration time.Duration, err error)
	// HealthChanged is called when a cluster's health state changes.
	HealthChanged(cluster string, from, to Health)
}

// NopObserver is an Observer that does nothing. Embed it in an Observer of
// your own to implement only the methods you need.
type NopObserver struct{}

// SyncDone does nothing.
func (NopObserver) SyncDone(SyncReport, error) {}

// BuildDone does nothing.
func (NopObserver) BuildDone(string, time.Duration, error) {}

// ProbeDone does nothing.
func (NopObserver) ProbeDone(string, time.Duration, error) {}

// HealthChanged does nothing.
func (NopObserver) HealthChanged(string, Health, Health) {}

// WithObserver sets the Observer. Default: NopObserver.
func WithObserver(o Observer) Option {
	return optionFunc(func(opts *options) { opts.observer = o })
}
