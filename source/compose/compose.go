// Package compose combines cluster sources: Merge lists the clusters of
// several sources as one, and Filter keeps the clusters that a predicate
// accepts, such as Names or Selector.
//
//	src := compose.Filter(
//		compose.Merge(inCluster, kubeconfigDir, hubSecrets),
//		compose.Selector(labels.SelectorFromSet(labels.Set{"env": "prod"})))
//
// A part that fails or hangs costs only its own clusters: Merge keeps its
// last good listing, marked with the error, and the other parts' changes
// come through (see Merge and WithPartTimeout).
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
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"

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
// A source that does not answer within the part timeout (DefaultPartTimeout,
// 20s, or three quarters of the time left before the merged List's ctx ends
// if that is less; see WithPartTimeout) counts as failing, with an error
// that wraps context.DeadlineExceeded: the merged List returns the others'
// clusters and that source's last good listing. Its ctx is then cancelled,
// and its goroutine ends when its List returns. A source whose List ignores
// ctx keeps that goroutine until its List returns; until then the merged
// source does not call it again and counts it as failing, with an error that
// says its earlier List has not returned, and the answer of that earlier
// List is dropped. So each source has at most one List running.
//
// The merged source is a Watcher if any source is. Its Watch runs the Watch
// of every source that is a Watcher, in goroutines of its own, passing on
// their changes. If one returns an error before ctx is done, Watch stops the
// others and returns that error, and the Syncer falls back on its interval.
func Merge(sources ...clusterregistry.ClusterSource) clusterregistry.ClusterSource {
	return MergeWith(sources)
}

// MergeWith is Merge with options: WithPartTimeout and WithClock.
func MergeWith(sources []clusterregistry.ClusterSource, opts ...Option) clusterregistry.ClusterSource {
	o := options{partTimeout: DefaultPartTimeout, clock: clock.RealClock{}}
	for _, opt := range opts {
		opt.apply(&o)
	}
	m := &merged{parts: slices.Clone(sources), opts: o, last: make([][]clusterregistry.Cluster, len(sources)),
		listed: make([]bool, len(sources)), busy: make([]bool, len(sources))}
	for _, s := range sources {
		if _, ok := s.(clusterregistry.Watcher); ok {
			return watchingMerged{m}
		}
	}
	return m
}

type merged struct {
	parts []clusterregistry.ClusterSource
	opts  options

	mu     sync.Mutex // protects last, listed and busy; held for no List
	last   [][]clusterregistry.Cluster
	listed []bool // whether part i has ever listed successfully
	busy   []bool // whether part i's List is running
}

type watchingMerged struct{ *merged }

var (
	_ clusterregistry.ClusterSource = (*merged)(nil)
	_ clusterregistry.Watcher       = watchingMerged{}
)

func (m *merged) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := m.opts.partTimeoutFor(ctx)
	partCtx, cancel := context.WithCancel(ctx)
	// Parts that have not answered when List returns are cancelled: a part
	// that honours ctx returns, and its goroutine ends.
	defer cancel()
	results, err := m.collect(ctx, m.start(partCtx), d)
	if err != nil {
		return nil, err
	}
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

// A partResult is what the List of part i returned.
type partResult struct {
	i        int
	clusters []clusterregistry.Cluster
	err      error
}

// errStillListing is the result of a part whose List, started by an earlier
// merged List, has not returned: it is not called again until it does.
var errStillListing = fmt.Errorf("its List of an earlier merged List has not returned: %w", context.DeadlineExceeded)

// start lists every part that is not still listing, each in a goroutine of
// its own, and returns the channel of their results; it has room for all of
// them, so a part that answers after List has returned blocks nobody.
func (m *merged) start(ctx context.Context) <-chan partResult {
	ch := make(chan partResult, len(m.parts))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.parts {
		if m.busy[i] {
			ch <- partResult{i: i, err: errStillListing}
			continue
		}
		m.busy[i] = true
		// One goroutine per part, so that a slow one delays nobody else's
		// List. It ends when the part's List returns: at once when List
		// cancels ctx, for a part that honours ctx.
		go func() {
			clusters, err := p.List(ctx)
			m.mu.Lock()
			m.busy[i] = false
			m.mu.Unlock()
			ch <- partResult{i: i, clusters: clusters, err: err}
			if m.opts.answered != nil {
				m.opts.answered()
			}
		}()
	}
	return ch
}

// collect waits for every part's result, for at most d: a part that has not
// answered by then gets a timeout as its error. It returns ctx's error if
// ctx ends first.
func (m *merged) collect(ctx context.Context, ch <-chan partResult, d time.Duration) ([]partResult, error) {
	results := make([]partResult, len(m.parts))
	answered := make([]bool, len(m.parts))
	t := m.opts.clock.NewTimer(d)
	defer t.Stop()
	for range m.parts {
		select {
		case r := <-ch:
			results[r.i], answered[r.i] = r, true
		case <-t.C():
			// The results already sent count, even when the timer
			// fired at the same moment (select picks either).
			for drained := false; !drained; {
				select {
				case r := <-ch:
					results[r.i], answered[r.i] = r, true
				default:
					drained = true
				}
			}
			for i := range results {
				if !answered[i] {
					results[i].err = fmt.Errorf("no answer within %v (WithPartTimeout): %w", d, context.DeadlineExceeded)
				}
			}
			return results, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return results, nil
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
