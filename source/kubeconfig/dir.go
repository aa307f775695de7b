package kubeconfig

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

// A Dir lists the contexts of every kubeconfig file in one directory, each
// file on its own (relative paths resolve against the directory; names are
// not merged across files). Files may be added, changed and removed while it
// runs. Hidden files (a name starting with "."), names ending in "~" and
// subdirectories are skipped, which also skips the "..data" entries of a
// mounted ConfigMap or Secret while following its symlinks.
//
// A cluster name that two or more contexts give (in two files, or in one
// file by WithRename) is listed once, with no Config and with Err set to a
// *clusterregistry.FieldError that names the first file and context and
// every other; other names carry on. Each file's current-context is marked
// default, so a directory of several files usually has an ambiguous default:
// use WithDefault.
//
// A Dir is a clusterregistry.Watcher. All methods are safe for concurrent
// use. WithPath and WithGetenv do not apply to it.
type Dir struct {
	p   poller
	dir string
}

var _ clusterregistry.Watcher = (*Dir)(nil)

// NewDir returns a Dir that reads the directory dir. It does not touch the
// directory until List.
func NewDir(dir string, opts ...Option) (*Dir, error) {
	o := defaultOptions(trust.Trusted)
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if dir == "" {
		return nil, errors.New("kubeconfig: directory must not be empty")
	}
	return &Dir{p: newPoller(o), dir: absPath(dir)}, nil
}

// List returns one cluster per context of the directory's files, sorted by
// name. A file that has not been usable since the Dir was made (it does not
// parse, cannot be read, or is bigger than WithMaxSize) is listed as one
// cluster named after the file (its base name), with no Config and Err set
// to a *clusterregistry.FieldError at the file: the Syncer reports it, and
// the other files carry on. List fails when the directory cannot be read, or
// holds more files or contexts than WithMaxClusters; the Syncer then keeps
// its last good state.
//
// List reads the directory unless a poll of it (the watch's, or another
// List's) is running: then it returns at once what the poll before that one
// found. What the running poll finds, the watch reports, or without a watch
// the next List returns.
func (d *Dir) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	files, broken, err := d.load()
	if err != nil {
		return nil, err
	}

	n := len(broken)
	for _, f := range files {
		n += f.Contexts()
	}
	if n > d.p.opts.maxClusters {
		return nil, fmt.Errorf("kubeconfig directory: %d contexts: %w", n, kcfg.TooMany(d.p.opts.maxClusters))
	}
	defs := broken
	for _, path := range slices.Sorted(maps.Keys(files)) {
		if d.p.opts.noMemo {
			defs = append(defs, kcfg.Merge(files[path]).Defs()...)
			continue
		}
		// A file kept across polls resolves its contexts once.
		defs = append(defs, files[path].Defs()...)
	}
	out := dedup.Clusters(defs)
	applyDefault(out, d.p.opts.defaultName)
	return out, nil
}

// Watch calls changed once, then checks the directory and its files a poll
// interval after the end of each check and calls changed when a file was added, changed or removed
// (once settled), when a certificate file they refer to changed, or when the
// directory became unreadable or readable again. It blocks until ctx is done
// and returns nil.
func (d *Dir) Watch(ctx context.Context, changed func()) error {
	return d.p.watch(ctx, changed, d.refreshLocked)
}

// load returns the Files of the latest poll, and an entry for each file that
// has never been usable: one team's broken file in a shared directory must
// not hold back everyone else's changes.
func (d *Dir) load() (map[string]*kcfg.File, []dedup.Def, error) {
	v := d.p.list(d.refreshLocked)
	if v.err != nil {
		return nil, nil, v.err
	}
	files := make(map[string]*kcfg.File, len(v.files))
	var broken []dedup.Def
	for path, l := range v.files {
		switch {
		case l.err != nil:
			name := filepath.Base(path)
			broken = append(broken, dedup.Def{Cluster: clusterregistry.Cluster{Name: name, Err: l.err}, Location: path, Field: "file"})
		case l.file != nil:
			files[path] = l.file
		}
	}
	return files, broken, nil
}

// refreshLocked scans the directory and observes its files. d.p.mu must be
// held.
func (d *Dir) refreshLocked() {
	paths, err := d.scan()
	if err == nil && len(paths) > d.p.opts.maxClusters {
		err = fmt.Errorf("%d files: %w", len(paths), kcfg.TooMany(d.p.opts.maxClusters))
	}
	if (err == nil) != (d.p.listErr == nil) {
		d.p.version++
	}
	if err != nil {
		d.p.listErr = fmt.Errorf("kubeconfig directory: %w", err)
		return
	}
	d.p.listErr = nil
	d.p.refreshLocked(paths, false)
}

func (d *Dir) scan() ([]string, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") || e.IsDir() {
			continue
		}
		path := filepath.Join(d.dir, name)
		if e.Type()&os.ModeSymlink != 0 {
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				continue
			}
		}
		paths = append(paths, path)
	}
	return paths, nil
}
