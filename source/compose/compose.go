// Package compose combines cluster sources: Merge lists the clusters of
// several sources as one, and Filter keeps the clusters that a predicate
// accepts, such as Names or Selector.
//
//	src := compose.Filter(
//		compose.Merge(inCluster, kubeconfigDir, hubSecrets),
//		compose.Selector(labels.SelectorFromSet(labels.Set{"env": "prod"})))
//
// A combined source is a clusterregistry.Watcher exactly when one of its
// parts is, so that a Syncer hears of every change that a part notices.
package compose

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
)

// Merge returns a source that lists the clusters of all sources, sorted by
// name. Its List lists every source at once, each in a goroutine of its own;
// it may call one source's List while another Merge call runs, so each
// source must allow concurrent Lists if the merged source is listed
// concurrently.
//
// A name listed by two or more sources is listed once, with no Config and
// with Err set to a *clusterregistry.FieldError that names the sources by
// their position in the arguments, from 0 ("source 0"); it keeps the labels
// of the first source's entry, so that a Filter by label keeps the error in
// view. The other clusters carry on. A name that one source lists twice is
// passed on as it is, for the Syncer to report.
//
// When a source's List fails, the merged List keeps that source's last good
// listing, with the failure as the Err of each of its clusters: the Syncer
// keeps their clients and shows the error, and the other sources' changes
// still come through. A source that has never listed successfully fails the
// merged List, so that the Syncer keeps its whole last good state.
//
// The merged source is a Watcher if any source is. Its Watch runs the Watch
// of every source that is a Watcher, in goroutines of its own, passing on
// their changes. If one returns an error before ctx is done, Watch stops the
// others and returns that error, and the Syncer falls back on its interval.
func Merge(sources ...clusterregistry.ClusterSource) clusterregistry.ClusterSource {
	m := &merged{parts: slices.Clone(sources), last: make([][]clusterregistry.Cluster, len(sources)), listed: make([]bool, len(sources))}
	for _, s := range sources {
		if _, ok := s.(clusterregistry.Watcher); ok {
			return watchingMerged{m}
		}
	}
	return m
}

type merged struct {
	parts []clusterregistry.ClusterSource

	mu     sync.Mutex // protects last and listed
	last   [][]clusterregistry.Cluster
	listed []bool // whether part i has ever listed successfully
}

type watchingMerged struct{ *merged }

var (
	_ clusterregistry.ClusterSource = (*merged)(nil)
	_ clusterregistry.Watcher       = watchingMerged{}
)

func (m *merged) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	type result struct {
		clusters []clusterregistry.Cluster
		err      error
	}
	results := make([]result, len(m.parts))
	var wg sync.WaitGroup
	for i, p := range m.parts {
		wg.Add(1)
		// One goroutine per source, so that a slow one delays nobody else's
		// List; all are joined before List returns.
		go func() {
			defer wg.Done()
			results[i].clusters, results[i].err = p.List(ctx)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	lists := make([][]clusterregistry.Cluster, len(m.parts))
	var errs []error
	m.mu.Lock()
	for i, r := range results {
		switch {
		case r.err == nil:
			m.last[i], m.listed[i] = r.clusters, true
			lists[i] = r.clusters
		case m.listed[i]:
			lists[i] = stale(m.last[i], &clusterregistry.FieldError{Location: sourceLocation(i), Field: "list",
				Err: fmt.Errorf("%w; keeping its last listing", r.err)})
		default:
			errs = append(errs, fmt.Errorf("source %d: %w", i, r.err))
		}
	}
	m.mu.Unlock()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return mergeLists(lists), nil
}

// stale returns copies of clusters that carry err.
func stale(clusters []clusterregistry.Cluster, err error) []clusterregistry.Cluster {
	out := slices.Clone(clusters)
	for i := range out {
		out[i].Err = err
	}
	return out
}

// mergeLists merges the listings of the sources, sorted by name; a name that
// several sources list becomes one cluster with an error (dedup.Clusters).
func mergeLists(lists [][]clusterregistry.Cluster) []clusterregistry.Cluster {
	var defs []dedup.Def
	for i, l := range lists {
		for _, c := range l {
			defs = append(defs, dedup.Def{Cluster: c, Location: sourceLocation(i), Field: "name"})
		}
	}
	return dedup.Clusters(defs)
}

func sourceLocation(i int) string { return "source " + strconv.Itoa(i) }

// Watch runs the Watch of every part that is a Watcher.
func (w watchingMerged) Watch(ctx context.Context, changed func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex // protects first
		first error
	)
	for i, p := range w.parts {
		pw, ok := p.(clusterregistry.Watcher)
		if !ok {
			continue
		}
		wg.Add(1)
		// Each part's watch lives until ctx ends or a part fails; Watch
		// joins them all.
		go func() {
			defer wg.Done()
			err := pw.Watch(ctx, changed)
			if err == nil || ctx.Err() != nil {
				return
			}
			errMu.Lock()
			if first == nil {
				first = fmt.Errorf("source %d: %w", i, err)
			}
			errMu.Unlock()
			cancel()
		}()
	}
	wg.Wait()
	return first
}

// Filter returns a source that lists the clusters of src that keep accepts.
// It is a Watcher if src is; its Watch is src's.
//
// A cluster that keep rejects is not listed, so the Syncer removes it; keep
// sees every cluster as its source lists it, including those with Err set.
func Filter(src clusterregistry.ClusterSource, keep func(clusterregistry.Cluster) bool) clusterregistry.ClusterSource {
	f := &filtered{src: src, keep: keep}
	if w, ok := src.(clusterregistry.Watcher); ok {
		return watchingFiltered{f, w}
	}
	return f
}

type filtered struct {
	src  clusterregistry.ClusterSource
	keep func(clusterregistry.Cluster) bool
}

type watchingFiltered struct {
	*filtered
	w clusterregistry.Watcher
}

func (f *filtered) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	clusters, err := f.src.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]clusterregistry.Cluster, 0, len(clusters))
	for _, c := range clusters {
		if f.keep(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f watchingFiltered) Watch(ctx context.Context, changed func()) error {
	return f.w.Watch(ctx, changed)
}

// Names accepts the clusters called by one of names.
func Names(names ...string) func(clusterregistry.Cluster) bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return func(c clusterregistry.Cluster) bool { return set[c.Name] }
}

// Selector accepts the clusters whose labels sel matches. Parse a
// kubectl-style selector with labels.Parse.
func Selector(sel labels.Selector) func(clusterregistry.Cluster) bool {
	return func(c clusterregistry.Cluster) bool { return sel.Matches(labels.Set(c.Labels)) }
}
