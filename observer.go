package clusterregistry

import "time"

// An Observer is told what the Syncer does, for metrics and tracing. Its
// methods are called outside every lock, from the Syncer's goroutines (builds
// and probes from several at once), and must return quickly. Embed
// NopObserver to implement only some of them. The examples module builds
// Prometheus metrics on it.
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
