// Package dashboard is a small multi-cluster web service built on
// clusterregistry: a page that lists the clusters of a Registry, an
// overview of every cluster asked at once, and the namespaces and pods of
// each, with a button that runs a sync.
//
// Its JSON API:
//
//	GET  /api/clusters                       the clusters, with their health (httpcluster.ListHandler)
//	GET  /api/events                         the Registry's events as Server-Sent Events (Subscribe),
//	                                         starting with the current state
//	GET  /api/requests                       each cluster's requests of the last minute (WithRequests)
//	GET  /api/overview                       every cluster's namespace and pod counts, asked at once
//	                                         (httpcluster.FanOutHandler): a cluster that is down
//	                                         shows its error beside the others, without holding them
//	GET  /api/namespaces?cluster=NAME        namespaces of a cluster (default: the default cluster)
//	GET  /api/pods?cluster=NAME&namespace=NS pods of a cluster, in one namespace or all
//	POST /api/sync                           run a sync now; its report
//
// The per-cluster endpoints go through httpcluster's middleware, so the
// cluster may also be named by the X-Cluster-Name header.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/fanout"
	"github.com/clusterregistry/clusterregistry/httpcluster"
)

// Client is what the dashboard needs of a cluster's client:
// *clusterregistry.Client in a service, *clusterregistrytest.FakeClient in
// tests.
type Client interface {
	Kubernetes() kubernetes.Interface
}

// RequestTimeout bounds each call to a cluster's API server.
const RequestTimeout = 10 * time.Second

// OverviewTimeout bounds each cluster's part of the overview: a cluster
// that has not answered by then shows as timed out, and the page does not
// wait for it.
const OverviewTimeout = 3 * time.Second

//go:embed page.html
var files embed.FS

var page = template.Must(template.ParseFS(files, "page.html"))

// An Option adds to the dashboard.
type Option func(*http.ServeMux)

// WithMetrics serves h (Prometheus metrics, say) at GET /metrics.
func WithMetrics(h http.Handler) Option {
	return func(mux *http.ServeMux) { mux.Handle("GET /metrics", h) }
}

// WithRequests serves h (metrics.Metrics.RecentHandler, say: a JSON object
// of each cluster's request rate and latency) at GET /api/requests, and the
// page shows them.
func WithRequests(h http.Handler) Option {
	return func(mux *http.ServeMux) { mux.Handle("GET /api/requests", h) }
}

// New returns the dashboard's handler over syncer's Registry. It starts no
// goroutine; the caller runs the Syncer. GET /api/events holds its request
// until the client goes or the Syncer stops: a server that shuts down
// should end its requests' contexts first (http.Server.BaseContext), since
// Shutdown waits for them.
func New[T Client](syncer *clusterregistry.Syncer[T], opts ...Option) http.Handler {
	reg := syncer.Registry()
	perCluster := httpcluster.New(reg)
	mux := http.NewServeMux()
	for _, opt := range opts {
		opt(mux)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, httpcluster.Describe(reg.Snapshot()))
	})
	mux.Handle("GET /api/clusters", httpcluster.ListHandler(reg))
	mux.Handle("GET /api/events", events(reg))
	mux.Handle("GET /api/overview", httpcluster.FanOutHandler(reg, overview[T], fanout.WithTimeout(OverviewTimeout)))
	mux.Handle("GET /api/namespaces", perCluster.Handler(http.HandlerFunc(namespaces[T])))
	mux.Handle("GET /api/pods", perCluster.Handler(http.HandlerFunc(pods[T])))
	mux.HandleFunc("POST /api/sync", func(w http.ResponseWriter, r *http.Request) {
		rep, err := syncer.Sync(r.Context())
		if err != nil {
			writeJSON(w, http.StatusBadGateway, apiError{Status: http.StatusBadGateway, Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, syncReport{
			Generation: rep.Generation, Published: rep.Published,
			Added: rep.Added, Updated: rep.Updated, Removed: rep.Removed, Failed: rep.Failed,
			Duration: rep.Duration.Round(time.Millisecond).String(),
		})
	})
	return mux
}

// Namespace is one entry of GET /api/namespaces.
type Namespace struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
}

// Pod is one entry of GET /api/pods.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Phase     string `json:"phase"`
	Node      string `json:"node,omitempty"`
}

// Overview is one cluster's value in GET /api/overview.
type Overview struct {
	Namespaces int `json:"namespaces"`
	Pods       int `json:"pods"`
	Running    int `json:"running"`
}

func overview[T Client](ctx context.Context, _ string, client T) (Overview, error) {
	ns, err := client.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return Overview{}, err
	}
	pods, err := client.Kubernetes().CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return Overview{}, err
	}
	o := Overview{Namespaces: len(ns.Items), Pods: len(pods.Items)}
	for _, p := range pods.Items {
		if p.Status.Phase == "Running" {
			o.Running++
		}
	}
	return o, nil
}

type namespaceList struct {
	Cluster    string      `json:"cluster"`
	Namespaces []Namespace `json:"namespaces"`
}

type podList struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace,omitempty"`
	Pods      []Pod  `json:"pods"`
}

type syncReport struct {
	Generation uint64   `json:"generation"`
	Published  bool     `json:"published"`
	Added      []string `json:"added"`
	Updated    []string `json:"updated"`
	Removed    []string `json:"removed"`
	Failed     []string `json:"failed"`
	Duration   string   `json:"duration"`
}

type apiError struct {
	Status  int    `json:"status"`
	Cluster string `json:"cluster,omitempty"`
	Error   string `json:"error"`
}

// cluster returns the leased client and name of the request's cluster.
func cluster[T Client](r *http.Request) (T, string) {
	client, _ := httpcluster.Client[T](r.Context()) // the middleware put it there
	name, _ := httpcluster.ClusterName(r.Context())
	return client, name
}

func namespaces[T Client](w http.ResponseWriter, r *http.Request) {
	client, name := cluster[T](r)
	ctx, cancel := context.WithTimeout(r.Context(), RequestTimeout)
	defer cancel()
	list, err := client.Kubernetes().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Status: http.StatusBadGateway, Cluster: name, Error: err.Error()})
		return
	}
	out := namespaceList{Cluster: name, Namespaces: make([]Namespace, 0, len(list.Items))}
	for _, ns := range list.Items {
		out.Namespaces = append(out.Namespaces, Namespace{Name: ns.Name, Phase: string(ns.Status.Phase)})
	}
	writeJSON(w, http.StatusOK, out)
}

func pods[T Client](w http.ResponseWriter, r *http.Request) {
	client, name := cluster[T](r)
	namespace := r.URL.Query().Get("namespace")
	ctx, cancel := context.WithTimeout(r.Context(), RequestTimeout)
	defer cancel()
	list, err := client.Kubernetes().CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Status: http.StatusBadGateway, Cluster: name, Error: err.Error()})
		return
	}
	out := podList{Cluster: name, Namespace: namespace, Pods: make([]Pod, 0, len(list.Items))}
	for _, p := range list.Items {
		out.Pods = append(out.Pods, Pod{Namespace: p.Namespace, Name: p.Name, Phase: string(p.Status.Phase), Node: p.Spec.NodeName})
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
