package httpcluster

import (
	"context"
	"errors"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/fanout"
)

// FanOutList is what FanOutHandler serves: every selected cluster's answer,
// or its error, side by side.
type FanOutList[R any] struct {
	// Generation is the generation of the Registry when the fan-out began.
	Generation uint64 `json:"generation"`
	// Failed counts the clusters that answered with an error.
	Failed int `json:"failed"`
	// Clusters are the selected clusters' results, in name order. Never nil.
	Clusters []FanOutResult[R] `json:"clusters"`
}

// FanOutResult is one cluster's entry of a FanOutList.
type FanOutResult[R any] struct {
	// Name is the cluster's name.
	Name string `json:"name"`
	// Value is what the function returned; nil when Error is set.
	Value *R `json:"value,omitempty"`
	// Error is the cluster's error, naming it; never a credential.
	Error string `json:"error,omitempty"`
	// Status is the HTTP status the API server answered with, when the
	// error is one of its answers (403, 404, 500...).
	Status int `json:"status,omitempty"`
	// TimedOut reports that the cluster did not answer by its deadline.
	TimedOut bool `json:"timedOut,omitempty"`
	// Unreachable reports that the cluster is known down and was not asked
	// (a *clusterregistry.UnreachableError); Since says since when.
	Unreachable bool      `json:"unreachable,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	// TookMS is how long the cluster took, in milliseconds.
	TookMS float64 `json:"tookMs"`
}

// FanOutHandler returns a handler that answers GET and HEAD by calling fn
// for every cluster of reg at once (fanout.Collect, with opts: deadline,
// concurrency, filters), and writing the JSON FanOutList: 200 with partial
// results, each cluster's value or error side by side, as soon as the last
// cluster has answered or passed its deadline. A client that goes away
// cancels the calls.
//
// The request may narrow the clusters further: ?cluster=NAME (repeated) and
// ?selector=LABEL-SELECTOR (a bad selector is answered 400). Other methods
// get 405. fn decides what is asked of each cluster: a handler never
// forwards the caller's path or query to the clusters.
func FanOutHandler[T, R any](reg *clusterregistry.Registry[T], fn fanout.Func[T, R], opts ...fanout.Option) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		narrow, err := requestFilters(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Status: http.StatusBadRequest, Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, collect(r.Context(), reg, fn, append(narrow, opts...)))
	})
}

// requestFilters returns the options that a request's query asks for.
func requestFilters(r *http.Request) ([]fanout.Option, error) {
	q := r.URL.Query()
	var opts []fanout.Option
	if names := q["cluster"]; len(names) > 0 {
		opts = append(opts, fanout.WithNames(names...))
	}
	if s := q.Get("selector"); s != "" {
		sel, err := labels.Parse(s)
		if err != nil {
			return nil, errors.New("selector: " + err.Error())
		}
		opts = append(opts, fanout.WithSelector(sel))
	}
	return opts, nil
}

func collect[T, R any](ctx context.Context, reg *clusterregistry.Registry[T], fn fanout.Func[T, R], opts []fanout.Option) FanOutList[R] {
	l := FanOutList[R]{Generation: reg.Snapshot().Generation(), Clusters: []FanOutResult[R]{}}
	for _, res := range fanout.Collect(ctx, reg, fn, opts...) {
		entry := FanOutResult[R]{Name: res.Name, TookMS: float64(res.Took.Microseconds()) / 1000}
		if res.Err == nil {
			entry.Value = &res.Value
			l.Clusters = append(l.Clusters, entry)
			continue
		}
		l.Failed++
		entry.Error = res.Err.Error()
		var status apierrors.APIStatus
		if errors.As(res.Err, &status) {
			entry.Status = int(status.Status().Code)
		}
		var down *clusterregistry.UnreachableError
		if errors.As(res.Err, &down) {
			entry.Unreachable, entry.Since = true, down.Since
		}
		entry.TimedOut = errors.Is(res.Err, context.DeadlineExceeded)
		l.Clusters = append(l.Clusters, entry)
	}
	return l
}
