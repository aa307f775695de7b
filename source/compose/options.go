package compose

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// DefaultPartTimeout bounds how long a merged List waits for one part.
// It is below the Syncer's default source timeout (30s), so that a part that
// hangs costs its own clusters only.
const DefaultPartTimeout = 20 * time.Second

// An Option configures MergeWith.
type Option interface {
	apply(*options)
}

type options struct {
	partTimeout time.Duration
	clock       clock.Clock
	// answered, if set, is called once a part's result is ready for its
	// merged List (tests: to step a fake clock only then).
	answered func()
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithPartTimeout bounds how long a merged List waits for each part. A part
// that has not answered by then is treated as a part whose List failed. A
// duration that is not positive keeps the default, DefaultPartTimeout.
func WithPartTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) {
		if d > 0 {
			o.partTimeout = d
		}
	})
}

// WithClock sets the clock of the part timeout. Tests pass a fake clock
// (k8s.io/utils/clock/testing). Default: the real clock; nil keeps it.
func WithClock(c clock.Clock) Option {
	return optionFunc(func(o *options) {
		if c != nil {
			o.clock = c
		}
	})
}

// partTimeout returns how long a List under ctx waits for its parts: the
// part timeout, or three quarters of the time that ctx has left if that is
// less, so that the merged List still answers before ctx ends.
func (o *options) partTimeoutFor(ctx context.Context) time.Duration {
	d := o.partTimeout
	if deadline, ok := ctx.Deadline(); ok {
		// Wall time: ctx's deadline is on the wall clock.
		d = min(d, time.Until(deadline)*3/4)
	}
	return d
}
