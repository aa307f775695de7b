package kubeconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/utils/clock"

	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

// Defaults of the options.
const (
	// DefaultPollInterval is how often files are checked for changes.
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultSettle is how long new content must stay the same before it is used.
	DefaultSettle = 250 * time.Millisecond
	// DefaultMaxSize bounds the size of one kubeconfig file, or of the data
	// given to Parse: 1 MiB.
	DefaultMaxSize = kcfg.DefaultMaxSize
	// DefaultMaxClusters bounds the contexts that one Source, Dir or Parse
	// lists.
	DefaultMaxClusters = kcfg.DefaultMaxClusters
)

// An Option configures a Source, a Dir, or Parse. Parse applies
// WithTrustPolicy, WithRename, WithMaxSize, WithMaxClusters and WithDefault,
// and ignores the others.
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
	policy       trust.Policy
	rename       func(string) string
	maxSize      int64
	maxClusters  int
	readFile     func(path string, limit int64) ([]byte, error) // tests slow it down
	noMemo       bool                                           // a Dir resolves every file on every List: the baseline of benchmarks
}

// defaultOptions returns the defaults, with policy as the trust policy:
// trust.Trusted for the operator's own files, trust.Untrusted for Parse.
func defaultOptions(policy trust.Policy) options {
	return options{
		getenv:       os.Getenv,
		osEnv:        true,
		pollInterval: DefaultPollInterval,
		settle:       DefaultSettle,
		clock:        clock.RealClock{},
		policy:       policy,
		maxSize:      DefaultMaxSize,
		maxClusters:  DefaultMaxClusters,
		readFile:     readFile,
	}
}

// kcfgOptions returns the options of decoding the kubeconfig at location,
// whose relative paths resolve against dir.
func (o *options) kcfgOptions(location, dir string) kcfg.Options {
	return kcfg.Options{Location: location, Dir: dir, Policy: o.policy, MaxSize: o.maxSize, Rename: o.rename}
}

// decoder returns the decoder of the file at path.
func (o *options) decoder(path string) func([]byte) (*kcfg.File, error) {
	return func(data []byte) (*kcfg.File, error) {
		return kcfg.Decode(data, o.kcfgOptions(path, filepath.Dir(path)))
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
	if err := kcfg.CheckLimits(o.maxSize, o.maxClusters); err != nil {
		errs = append(errs, err)
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

// WithTrustPolicy sets which settings the kubeconfigs may use: exec and
// auth-provider plugins, files on this host (certificate-authority,
// client-certificate, client-key, tokenFile), insecure-skip-tls-verify and
// proxy-url. A context that uses a refused setting is listed with an error
// that names the setting and wraps trust.ErrRefused; nothing it
// names is read or run. Default: trust.Trusted for New and
// NewDir, which read the operator's own files, and
// trust.Untrusted for Parse, whose bytes often come from
// users.
func WithTrustPolicy(p trust.Policy) Option {
	return optionFunc(func(o *options) { o.policy = p })
}

// WithRename sets the cluster name of each context; nil names clusters after
// their contexts, the default. A name must pass clusterregistry.ValidateName:
// a context whose name does not (EKS's "arn:aws:eks:...:cluster/prod", say)
// is listed with an error, and the Syncer ignores it. SanitizeName is a
// ready renaming; two contexts renamed to one name are an error for that
// name. WithDefault names a cluster by its new name.
func WithRename(rename func(context string) string) Option {
	return optionFunc(func(o *options) { o.rename = rename })
}

// SanitizeName is a renaming for WithRename that makes any context name
// valid: every character other than an ASCII letter, a digit or . _ : @ -
// becomes '-', leading and trailing characters other than letters and
// digits are dropped, and the result is cut to
// clusterregistry.MaxNameLength. A valid name stays as it is, so
// "arn:aws:eks:us-east-1:123:cluster/prod" becomes
// "arn:aws:eks:us-east-1:123:cluster-prod". A name with no letter or digit
// becomes "", which is listed with an error.
func SanitizeName(context string) string { return kcfg.SanitizeName(context) }

// WithMaxSize bounds the size of one kubeconfig file (or of Parse's data),
// in bytes. A bigger file is not read: it counts as unreadable, which fails
// List or keeps the file's last good content (see the package
// documentation); Parse returns an error. Default: DefaultMaxSize, 1 MiB.
func WithMaxSize(bytes int64) Option {
	return optionFunc(func(o *options) { o.maxSize = bytes })
}

// WithMaxClusters bounds the number of contexts a listing may hold (for a
// Dir, also the number of files). Past it, List and Parse fail, before any
// context is resolved. Default: DefaultMaxClusters, 10,000.
func WithMaxClusters(n int) Option {
	return optionFunc(func(o *options) { o.maxClusters = n })
}
