package httpcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/clusterregistry/clusterregistry"
)

// Names the middleware reads the cluster's name from, unless options change
// them.
const (
	DefaultHeader     = "X-Cluster-Name"
	DefaultQueryParam = "cluster"
)

// Middleware picks the cluster of each request and leases its client for the
// length of the request. New makes one; it is safe for concurrent use and
// starts no goroutine.
type Middleware[T any] struct {
	reg  *clusterregistry.Registry[T]
	opts options
}

// An Option configures a Middleware.
type Option interface {
	apply(*options)
}

type options struct {
	pathValue string
	header    string
	query     string
	onError   func(http.ResponseWriter, *http.Request, *Error)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithHeader sets the request header that names the cluster; empty ignores
// headers. Default: X-Cluster-Name.
func WithHeader(name string) Option {
	return optionFunc(func(o *options) { o.header = name })
}

// WithQueryParam sets the query parameter that names the cluster, read when
// the header is absent or empty; empty ignores the query. Default: cluster.
func WithQueryParam(name string) Option {
	return optionFunc(func(o *options) { o.query = name })
}

// WithPathValue makes the middleware read the cluster's name first from the
// ServeMux path wildcard called name (http.Request.PathValue), as in the
// pattern "GET /clusters/{cluster}/pods". Default: none.
func WithPathValue(name string) Option {
	return optionFunc(func(o *options) { o.pathValue = name })
}

// WithErrorHandler sets what answers a request whose cluster cannot be
// leased. Default: WriteError, a JSON body.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err *Error)) Option {
	return optionFunc(func(o *options) { o.onError = h })
}

// New returns a Middleware over reg.
func New[T any](reg *clusterregistry.Registry[T], opts ...Option) *Middleware[T] {
	o := options{header: DefaultHeader, query: DefaultQueryParam, onError: WriteError}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.onError == nil {
		o.onError = WriteError
	}
	return &Middleware[T]{reg: reg, opts: o}
}

// RequestedCluster returns the name of the cluster r asks for: its path
// value (if WithPathValue is set), else its header, else its query
// parameter; "" means the default cluster.
func (m *Middleware[T]) RequestedCluster(r *http.Request) string {
	if m.opts.pathValue != "" {
		if name := r.PathValue(m.opts.pathValue); name != "" {
			return name
		}
	}
	if m.opts.header != "" {
		if name := r.Header.Get(m.opts.header); name != "" {
			return name
		}
	}
	if m.opts.query != "" {
		return r.URL.Query().Get(m.opts.query)
	}
	return ""
}

// Handler returns a handler that leases the client of the request's cluster
// (see RequestedCluster), calls next with the client and the cluster's name in the
// request's context, and releases the lease when next returns. A sync that
// replaces or removes the cluster meanwhile releases the client to its
// Builder only after that (or after the Syncer's drain timeout). A handler
// that hands the client to a goroutine of its own must not let that goroutine
// outlive the request.
//
// When the cluster cannot be leased, next is not called and the error handler
// answers: 404 for an unknown cluster, 503 otherwise (including every
// request once the Syncer has stopped). Every answer carries
// "Vary: X-Cluster-Name" (the configured header), for caches.
func (m *Middleware[T]) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.opts.header != "" {
			// The answer depends on the header: tell caches so.
			w.Header().Add("Vary", m.opts.header)
		}
		name := m.RequestedCluster(r)
		var (
			lease *clusterregistry.Lease[T]
			err   error
		)
		if name == "" {
			lease, err = m.reg.LeaseDefault()
		} else {
			lease, err = m.reg.Lease(name)
		}
		if err != nil {
			m.opts.onError(w, r, newError(name, err))
			return
		}
		defer lease.Release()
		ctx := NewContext(r.Context(), lease.Name(), lease.Client())
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// An Error says why a request's cluster could not be leased.
type Error struct {
	// Status is the HTTP status: 404 for an unknown cluster, 503 for one
	// that has no working client, a missing default, or a stopped Syncer.
	Status int
	// Cluster names the cluster: the one asked for, or the default; it is
	// empty when no cluster was asked for and there is no default.
	Cluster string
	// Err is the Registry's error. Like every error of the Registry, it
	// never contains a credential.
	Err error
}

func newError(asked string, err error) *Error {
	e := &Error{Status: http.StatusServiceUnavailable, Cluster: asked, Err: err}
	// Not found only for a name asked for: a default whose first build runs
	// is unavailable for now, and a stopped Syncer's Registry says stopped.
	if asked != "" && errors.Is(err, clusterregistry.ErrClusterNotFound) {
		e.Status = http.StatusNotFound
	}
	var ce *clusterregistry.ClusterError
	if e.Cluster == "" && errors.As(err, &ce) {
		e.Cluster = ce.Name // the failing default
	}
	return e
}

// Error returns the status and the Registry's error, such as
// "404 Not Found: cluster \"dev\": cluster not found".
func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %v", e.Status, http.StatusText(e.Status), e.Err)
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// errorBody is the JSON body WriteError writes.
type errorBody struct {
	Status  int    `json:"status"`
	Cluster string `json:"cluster,omitempty"`
	Error   string `json:"error"`
}

// WriteError answers with e.Status and a JSON body of the status, the
// cluster's name and the error's message:
//
//	{"status":503,"cluster":"prod","error":"cluster \"prod\": server version: ..."}
//
// It is the default error handler of a Middleware.
func WriteError(w http.ResponseWriter, _ *http.Request, e *Error) {
	writeJSON(w, e.Status, errorBody{Status: e.Status, Cluster: e.Cluster, Error: e.Err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// clientKey is the context key of the leased client; the type parameter
// keeps clients of different types apart.
type clientKey[T any] struct{}

// nameKey is the context key of the leased cluster's name.
type nameKey struct{}

// NewContext returns a copy of ctx that carries a cluster's name and client,
// as the middleware's handler receives it. Tests of a handler use it to call
// the handler without a Middleware.
func NewContext[T any](ctx context.Context, cluster string, client T) context.Context {
	ctx = context.WithValue(ctx, nameKey{}, cluster)
	return context.WithValue(ctx, clientKey[T]{}, client)
}

// Client returns the client that the middleware leased for the request whose
// context is ctx. It reports false when there is none of type T: the handler
// does not run behind the middleware, or T is not the Registry's client type.
// The client must not be used after the handler returns.
func Client[T any](ctx context.Context) (T, bool) {
	c, ok := ctx.Value(clientKey[T]{}).(T)
	return c, ok
}

// ClusterName returns the name of the cluster that the middleware leased for
// the request whose context is ctx (the default's name when the request
// named none), and false when the request did not go through the middleware.
func ClusterName(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(nameKey{}).(string)
	return name, ok
}
