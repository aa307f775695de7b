package clusterregistry

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Defaults of the Syncer options; each option's doc says its default.
const (
	defaultInterval      = 30 * time.Second
	defaultConcurrency   = 8
	defaultBuildTimeout  = 10 * time.Second
	defaultSourceTimeout = 30 * time.Second
	defaultBackoffBase   = time.Second
	defaultBackoffMax    = 5 * time.Minute
	defaultDrainTimeout  = time.Minute
	defaultMaxClusters   = 100_000
)

// jitter is the fraction by which a periodic interval or a backoff delay is
// lengthened at random, so that many replicas or clusters spread out.
const jitter = 0.2

// An Option configures a Syncer.
type Option interface {
	apply(*options)
}

type options struct {
	interval      time.Duration
	concurrency   int
	buildTimeout  time.Duration
	sourceTimeout time.Duration
	backoffBase   time.Duration
	backoffMax    time.Duration
	drainTimeout  time.Duration
	maxClusters   int
	clock         clock.WithTickerAndDelayedExecution
	logger        logr.Logger
	observer      Observer
	healthCheck   *HealthCheck // nil: no probing
	noFailFast    bool         // WithoutFailFast

	// afterSyncUnlock, when set by a test, runs in Sync between the end of
	// the sync and the release of what it retired.
	afterSyncUnlock func()
}

func defaultOptions() options {
	return options{
		interval:      defaultInterval,
		concurrency:   defaultConcurrency,
		buildTimeout:  defaultBuildTimeout,
		sourceTimeout: defaultSourceTimeout,
		backoffBase:   defaultBackoffBase,
		backoffMax:    defaultBackoffMax,
		drainTimeout:  defaultDrainTimeout,
		maxClusters:   defaultMaxClusters,
		clock:         clock.RealClock{},
		logger:        logr.Discard(),
		observer:      NopObserver{},
	}
}

func (o *options) validate() error {
	var errs []error
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	positive("interval", o.interval)
	positive("build timeout", o.buildTimeout)
	positive("source timeout", o.sourceTimeout)
	positive("backoff base", o.backoffBase)
	positive("drain timeout", o.drainTimeout)
	if o.maxClusters < 1 {
		errs = append(errs, fmt.Errorf("max clusters must be at least 1, got %d", o.maxClusters))
	}
	if o.concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency must be at least 1, got %d", o.concurrency))
	}
	if o.backoffMax < o.backoffBase {
		errs = append(errs, fmt.Errorf("backoff max %v is below backoff base %v", o.backoffMax, o.backoffBase))
	}
	if o.clock == nil {
		errs = append(errs, errors.New("clock must not be nil"))
	}
	if o.observer == nil {
		errs = append(errs, errors.New("observer must not be nil"))
	}
	if o.healthCheck != nil {
		if err := o.healthCheck.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithInterval sets how often the Syncer lists the source when nothing
// triggers it sooner. Each wait is lengthened at random by up to 20%.
// Default: 30s.
func WithInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.interval = d })
}

// WithConcurrency sets how many clients are built at once. Default: 8.
func WithConcurrency(n int) Option {
	return optionFunc(func(o *options) { o.concurrency = n })
}

// WithBuildTimeout bounds each client build: a cluster whose build has not
// finished by then fails, and delays no other cluster. Default: 10s.
func WithBuildTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.buildTimeout = d })
}

// WithSourceTimeout bounds each List of the source. Default: 30s.
func WithSourceTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.sourceTimeout = d })
}

// WithBackoff sets the retry delay of a cluster whose build fails: base after
// the first failure, doubling with each further one up to max, each
// lengthened at random by up to 20% (and never beyond max). A changed
// description is built at the next sync whatever its backoff.
// Defaults: 1s and 5m.
func WithBackoff(base, max time.Duration) Option {
	return optionFunc(func(o *options) { o.backoffBase, o.backoffMax = base, max })
}

// WithDrainTimeout bounds how long a replaced or removed client waits for its
// leases to be released before it is released to its Builder anyway.
// Default: 1m.
func WithDrainTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.drainTimeout = d })
}

// WithClock sets the clock for the interval, the build timeout, the backoff,
// the drain timeout, health checks (interval and timeout) and the times the
// Registry records. Tests pass a fake
// clock (k8s.io/utils/clock/testing). The source timeout follows the wall
// clock. Default: the real clock.
func WithClock(c clock.WithTickerAndDelayedExecution) Option {
	return optionFunc(func(o *options) { o.clock = c })
}

// WithLogger sets the logger. The Syncer logs with the key "cluster" and
// never logs a credential. Default: logr.Discard().
func WithLogger(l logr.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithMaxClusters bounds how many clusters one listing may hold. A source
// that lists more is treated as failing (its whole last good state stays),
// so that a runaway or hostile store cannot make the Syncer build without
// end. Default: 100,000.
func WithMaxClusters(n int) Option {
	return optionFunc(func(o *options) { o.maxClusters = n })
}
