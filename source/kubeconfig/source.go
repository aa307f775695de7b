package kubeconfig

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"k8s.io/client-go/util/homedir"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

// A Source lists the contexts of the kubeconfig files that client-go's
// loading rules pick: the file given to WithPath; else every file of the
// KUBECONFIG list (separated by the OS path list separator, missing files
// skipped), merged as client-go merges them (the first file to define a
// name or a current-context wins); else ~/.kube/config, if it exists.
//
// A Source is a clusterregistry.Watcher: Watch polls the files and reports
// each change. See the package documentation for what a change, a broken
// file and a deleted file do. All methods are safe for concurrent use.
type Source struct {
	p        poller
	paths    []string
	required bool
}

var _ clusterregistry.Watcher = (*Source)(nil)

// New returns a Source. It reads the environment for KUBECONFIG and the home
// directory, and does not touch the files until List.
func New(opts ...Option) (*Source, error) {
	o := defaultOptions(trust.Trusted)
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	s := &Source{p: newPoller(o)}
	switch env := o.getenv("KUBECONFIG"); {
	case o.path != "":
		s.paths, s.required = []string{absPath(o.path)}, true
	case env != "":
		for _, p := range filepath.SplitList(env) {
			if p != "" && !slices.Contains(s.paths, absPath(p)) {
				s.paths = append(s.paths, absPath(p))
			}
		}
	default:
		home := homedir.HomeDir()
		if !o.osEnv {
			home = o.getenv("HOME")
		}
		if home == "" {
			return nil, errors.New("kubeconfig: no KUBECONFIG and no home directory: set one, or use WithPath")
		}
		s.paths = []string{filepath.Join(home, ".kube", "config")}
	}
	return s, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Paths returns the files that the Source reads, in order of precedence.
func (s *Source) Paths() []string { return slices.Clone(s.paths) }

// List returns one cluster per context of the merged files, sorted by name.
// It fails when a file has never been usable since the Source was made (it
// does not parse, cannot be read, is bigger than WithMaxSize, or is the
// missing WithPath file), and when the files hold more contexts than
// WithMaxClusters.
//
// List reads the files unless a poll of them (the watch's, or another
// List's) is running: then it returns at once what the poll before that one
// found. What the running poll finds, the watch reports, or without a watch
// the next List returns.
func (s *Source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	files, err := s.load()
	if err != nil {
		return nil, err
	}
	set := kcfg.Merge(files...)
	if n := len(set.Contexts()); n > s.p.opts.maxClusters {
		return nil, fmt.Errorf("kubeconfig: %d contexts: %w", n, kcfg.TooMany(s.p.opts.maxClusters))
	}
	// Resolving reads certificate files: no lock is needed, the Files are
	// immutable.
	clusters := set.Clusters()
	applyDefault(clusters, s.p.opts.defaultName)
	return clusters, nil
}

// Watch calls changed once, then checks the files a poll interval after the
// end of each check and calls changed when a file's content in use changed, or a certificate file
// it refers to did. It blocks until ctx is done and returns nil.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	return s.p.watch(ctx, changed, func() {
		s.p.refreshLocked(s.paths, s.required)
	})
}

func (s *Source) load() ([]*kcfg.File, error) {
	v := s.p.list(func() { s.p.refreshLocked(s.paths, s.required) })
	var files []*kcfg.File
	var errs []error
	for _, path := range s.paths {
		switch l := v.files[path]; {
		case l.err != nil:
			errs = append(errs, l.err)
		case l.file != nil:
			files = append(files, l.file)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return files, nil
}

func applyDefault(clusters []clusterregistry.Cluster, name *string) {
	if name == nil {
		return
	}
	for i := range clusters {
		clusters[i].Default = *name != "" && clusters[i].Name == *name
	}
}

// Parse parses one kubeconfig and returns one cluster per context, sorted by
// name, the current-context marked Default, as a Source would list it.
// Relative paths are resolved against the working directory; location names
// the kubeconfig in errors. Unusable contexts have Err set. The error is a
// *clusterregistry.FieldError for a document that cannot be decoded, is
// bigger than WithMaxSize or holds more contexts than WithMaxClusters, and a
// plain error for invalid options; blank data is a kubeconfig with no
// contexts.
//
// Parse is meant for kubeconfigs that come from users (an upload form, an
// API): unless WithTrustPolicy says otherwise, it applies
// trust.Untrusted, so a context with an exec or
// auth-provider plugin, or one that refers to a file on this host, is
// listed with an error that wraps trust.ErrRefused.
func Parse(data []byte, location string, opts ...Option) ([]clusterregistry.Cluster, error) {
	o := defaultOptions(trust.Untrusted)
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := kcfg.CheckLimits(o.maxSize, o.maxClusters); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	f, err := kcfg.Decode(data, o.kcfgOptions(location, ""))
	if err != nil {
		return nil, err
	}
	if n := f.Contexts(); n > o.maxClusters {
		return nil, &clusterregistry.FieldError{Location: location, Field: "contexts",
			Err: fmt.Errorf("%d contexts: %w", n, kcfg.TooMany(o.maxClusters))}
	}
	clusters := kcfg.Merge(f).Clusters()
	applyDefault(clusters, o.defaultName)
	return clusters, nil
}
