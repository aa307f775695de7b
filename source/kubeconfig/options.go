package kubeconfig

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/utils/clock"
)

// Defaults of the options.
const (
	DefaultPollInterval = 500 * time.Millisecond
	DefaultSettle       = 250 * time.Millisecond
)

// An Option configures a Source or a Dir.
type Option interface {
	apply(*options)
}

type options struct {
	path         string
	getenv       func(string) string
	osEnv        bool // getenv is os.Getenv: find the home directory as client-go does
	pollInterval time.Duration
	settle       time.Duration
	clock        clock.WithTicker
	defaultName  *string
}

func defaultOptions() options {
	return options{
		getenv:       os.Getenv,
		osEnv:        true,
		pollInterval: DefaultPollInterval,
		settle:       DefaultSettle,
		clock:        clock.RealClock{},
	}
}

func (o *options) validate() error {
	var errs []error
	if o.pollInterval <= 0 {
		errs = append(errs, fmt.Errorf("poll interval must be positive, got %v", o.pollInterval))
	}
	if o.settle < 0 {
		errs = append(errs, fmt.Errorf("settle time must not be negative, got %v", o.settle))
	}
	if o.clock == nil {
		errs = append(errs, errors.New("clock must not be nil"))
	}
	if o.getenv == nil {
		errs = append(errs, errors.New("getenv must not be nil"))
	}
	return errors.Join(errs...)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithPath makes a Source read this one file, as kubectl's --kubeconfig flag
// does: KUBECONFIG and ~/.kube/config are then ignored, and a missing file is
// an error. Dir ignores it.
func WithPath(path string) Option {
	return optionFunc(func(o *options) { o.path = path })
}

// WithGetenv sets how a Source looks up the KUBECONFIG and HOME environment
// variables. Tests pass a map's lookup. Default: os.Getenv (with client-go's
// rules for the home directory).
func WithGetenv(getenv func(key string) string) Option {
	return optionFunc(func(o *options) { o.getenv, o.osEnv = getenv, false })
}

// WithPollInterval sets how often Watch checks the files. Default: 500ms.
func WithPollInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.pollInterval = d })
}

// WithSettle sets how long a changed file's content must stay the same
// before it is used; zero uses it at once. Default: 250ms.
func WithSettle(d time.Duration) Option {
	return optionFunc(func(o *options) { o.settle = d })
}

// WithClock sets the clock of the poll interval and the settle time. Tests
// pass a fake clock (k8s.io/utils/clock/testing). Default: the real clock.
func WithClock(c clock.WithTicker) Option {
	return optionFunc(func(o *options) { o.clock = c })
}

// WithDefault marks the cluster called name as the default, instead of the
// current-context; an empty name marks none.
func WithDefault(name string) Option {
	return optionFunc(func(o *options) { o.defaultName = &name })
}
