package fanout

import (
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"

	"github.com/clusterregistry/clusterregistry"
)

// Defaults of the options.
const (
	// DefaultConcurrency is how many calls run at once unless
	// WithConcurrency says otherwise.
	DefaultConcurrency = 16
	// DefaultTimeout is each call's deadline unless WithTimeout says
	// otherwise. It is below the browser-facing budgets of most pages, and
	// far below what client-go waits for an API server that never answers.
	DefaultTimeout = 10 * time.Second
)

// An Option configures Each and Collect.
type Option interface {
	apply(*options)
}

type options struct {
	concurrency int
	timeout     time.Duration
	filters     []func(clusterregistry.ClusterInfo) bool
	clock       clock.Clock
}

func newOptions(opts []Option) options {
	o := options{concurrency: DefaultConcurrency, timeout: DefaultTimeout, clock: clock.RealClock{}}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	return o
}

func (o *options) keep(info clusterregistry.ClusterInfo) bool {
	for _, f := range o.filters {
		if !f(info) {
			return false
		}
	}
	return true
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithConcurrency sets how many calls run at once. A value below 1 keeps the
// default, DefaultConcurrency.
func WithConcurrency(n int) Option {
	return optionFunc(func(o *options) {
		if n >= 1 {
			o.concurrency = n
		}
	})
}

// WithTimeout sets the deadline of each call, counted from its start: its
// context is cancelled then, and its Result is an error wrapping
// context.DeadlineExceeded. A duration that is not positive keeps the
// default, DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	})
}

// WithFilter selects the clusters for which keep returns true. keep runs in
// the caller's goroutine, before any call starts; several filters must all
// keep a cluster. A nil keep selects every cluster.
func WithFilter(keep func(clusterregistry.ClusterInfo) bool) Option {
	return optionFunc(func(o *options) {
		if keep != nil {
			o.filters = append(o.filters, keep)
		}
	})
}

// WithNames selects the clusters called one of names. A name the Snapshot
// does not know gets no Result.
func WithNames(names ...string) Option {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	return WithFilter(func(info clusterregistry.ClusterInfo) bool {
		_, ok := set[info.Name]
		return ok
	})
}

// WithSelector selects the clusters whose labels (those of the source's
// latest listing) sel matches. A nil sel selects every cluster.
func WithSelector(sel labels.Selector) Option {
	if sel == nil {
		return WithFilter(nil)
	}
	return WithFilter(func(info clusterregistry.ClusterInfo) bool { return sel.Matches(labels.Set(info.Labels)) })
}

// WithClock sets the clock of the deadlines and of Result.Took. Tests pass a
// fake clock (k8s.io/utils/clock/testing). Default: the real clock; nil keeps
// it.
func WithClock(c clock.Clock) Option {
	return optionFunc(func(o *options) {
		if c != nil {
			o.clock = c
		}
	})
}
