package fanout

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clusterregistry/clusterregistry"
)

// A Func is what a fan-out runs for one cluster: name is the cluster's name,
// client its leased client. It must honour ctx, which ends at the cluster's
// deadline or when the fan-out is cancelled; it runs with no lock of the
// library held, several at once.
type Func[T, R any] func(ctx context.Context, name string, client T) (R, error)

// Result is one cluster's answer.
type Result[R any] struct {
	// Name is the cluster's name.
	Name string
	// Value is what the Func returned; the zero R when Err is set by the
	// fan-out itself.
	Value R
	// Err is the Func's error; or the Lease's (the cluster has no working
	// client: a *clusterregistry.ClusterError, or ErrClusterNotFound for a
	// cluster removed since the Snapshot); or an error naming the cluster
	// that wraps context.DeadlineExceeded when the call passed its deadline,
	// or the caller's context's error when it ended first.
	Err error
	// Took is how long the call took, or how long it ran until it was
	// abandoned.
	Took time.Duration
}

// Each returns an iterator over the Results of fn for every cluster of reg
// that the options select, in the order they come. Each run of the iterator
// takes reg's Snapshot and starts the calls afresh. Breaking out of the loop,
// or ctx ending, cancels the calls in progress; the iterator returns without
// waiting for a Func that ignores its context (see the package
// documentation). A nil reg or fn yields nothing.
func Each[T, R any](ctx context.Context, reg *clusterregistry.Registry[T], fn Func[T, R], opts ...Option) iter.Seq[Result[R]] {
	o := newOptions(opts)
	return func(yield func(Result[R]) bool) {
		if reg == nil || fn == nil {
			return
		}
		run(ctx, reg, fn, &o, yield)
	}
}

// Collect runs fn for every cluster of reg that the options select, as Each
// does, and returns every Result in name order.
func Collect[T, R any](ctx context.Context, reg *clusterregistry.Registry[T], fn Func[T, R], opts ...Option) []Result[R] {
	var out []Result[R]
	for r := range Each(ctx, reg, fn, opts...) {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Result[R]) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// run yields the results of one fan-out.
func run[T, R any](ctx context.Context, reg *clusterregistry.Registry[T], fn Func[T, R], o *options, yield func(Result[R]) bool) {
	var names []string
	for info := range reg.Snapshot().Clusters() {
		if o.keep(info) {
			names = append(names, info.Name)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	// Room for every result: no sender ever blocks on the consumer, so the
	// wait below is bounded by the calls' deadlines alone.
	results := make(chan Result[R], len(names))
	wait := start(ctx, reg, fn, o, names, results)
	defer func() {
		cancel()
		wait()
	}()
	for range names {
		if !yield(<-results) {
			return
		}
	}
}

// start calls fn for each of names, at most o.concurrency at once, and sends
// one Result per name to results. wait returns once every call has sent its
// Result, which takes at most a deadline after ctx ends.
func start[T, R any](ctx context.Context, reg *clusterregistry.Registry[T], fn Func[T, R], o *options, names []string, results chan<- Result[R]) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	// The spawner waits for free slots, so that start returns at once and the
	// caller sees the first results while later clusters wait their turn.
	go func() {
		defer wg.Done()
		sem := make(chan struct{}, o.concurrency)
		for i, name := range names {
			// ctx first: select picks at random among ready cases, and a
			// free slot must not start a call after the fan-out ended.
			if ctx.Err() == nil {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				for _, rest := range names[i:] {
					results <- Result[R]{Name: rest, Err: fmt.Errorf("cluster %q: %w", rest, context.Cause(ctx))}
				}
				return
			}
			wg.Add(1)
			// One per cluster, joined by wait: it returns at the deadline
			// at the latest, whatever fn does.
			go func() {
				defer wg.Done()
				results <- call(ctx, reg, fn, o, name)
				<-sem
			}()
		}
	}()
	return wg.Wait
}

// call runs fn for the cluster called name under its deadline, holding a
// Lease of its client, and returns its Result by the deadline at the latest.
func call[T, R any](ctx context.Context, reg *clusterregistry.Registry[T], fn Func[T, R], o *options, name string) Result[R] {
	begin := o.clock.Now()
	lease, err := reg.Lease(name)
	if err != nil {
		return Result[R]{Name: name, Err: err, Took: o.clock.Since(begin)}
	}
	cctx, cancel := context.WithCancelCause(ctx)
	// Made before fn starts, so that a test's fake clock that sees fn
	// running sees the deadline's timer too.
	timer := o.clock.NewTimer(o.timeout)
	defer timer.Stop()
	done := make(chan Result[R], 1)
	// fn's own goroutine, so that call can return at the deadline. It ends
	// when fn returns, and only then releases the Lease: an abandoned fn
	// never uses a released client. Nobody waits for it but the Lease.
	go func() {
		defer lease.Release()
		defer cancel(nil)
		v, err := fn(cctx, name, lease.Client())
		done <- Result[R]{Name: name, Value: v, Err: err, Took: o.clock.Since(begin)}
	}()
	select {
	case r := <-done:
		return r
	case <-timer.C():
	case <-ctx.Done():
	}
	select {
	case r := <-done: // fn finished as the deadline came: its answer wins
		return r
	default:
	}
	err = fmt.Errorf("cluster %q: no answer within %v: %w", name, o.timeout, context.DeadlineExceeded)
	if ctx.Err() != nil {
		err = fmt.Errorf("cluster %q: %w", name, context.Cause(ctx))
	}
	cancel(err)
	return Result[R]{Name: name, Err: err, Took: o.clock.Since(begin)}
}
