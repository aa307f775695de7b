// Package metrics exposes a Syncer's work as Prometheus metrics, built on the
// library's Observer interface (the library itself takes no metrics
// dependency).
//
//	m := metrics.New(prometheus.NewRegistry())
//	builder := clusterregistry.ClientBuilder{Observer: m} // per-cluster request metrics
//	syncer, err := clusterregistry.NewSyncer(source, builder, clusterregistry.WithObserver(m))
//	m.WatchClusters(func() []clusterregistry.ClusterInfo { return slices.Collect(syncer.Registry().Snapshot().Clusters()) })
//	http.Handle("/metrics", m.Handler())
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clusterregistry/clusterregistry"
)

// Metrics is a clusterregistry.Observer that records Prometheus metrics:
//
//	clusterregistry_sync_duration_seconds          histogram of sync wall time
//	clusterregistry_sync_lock_hold_seconds         histogram of the write lock's hold per sync
//	clusterregistry_sync_errors_total              counter of syncs whose source failed
//	clusterregistry_build_duration_seconds{result} histogram of client builds
//	clusterregistry_build_failures_total{cluster}  counter of failed builds
//	clusterregistry_probe_duration_seconds{result} histogram of health probes
//	clusterregistry_health_changes_total{to}       counter of health state changes
//	clusterregistry_clusters{state}                clusters by state, read at scrape time
//	clusterregistry_requests_total{cluster,verb,resource,code}
//	                                               counter of the clients' requests (ClientBuilder.Observer)
//	clusterregistry_request_duration_seconds{cluster,verb}
//	                                               histogram of their latency to the response's headers
//
// Cluster names are labels on build failures and on requests only: the
// request series are what a fleet dashboard asks for by cluster. Their
// other labels come from a bounded set (clusterregistry.RequestInfo): the
// verb, the resource as group/resource[/subresource] ("other" for paths
// that name none) and the status code ("error" when no response came). The
// histogram leaves out resource and code, so that a cluster costs one
// histogram per verb rather than one per resource and code. Methods are
// safe for concurrent use.
//
// It also keeps each cluster's last minute of requests for a dashboard's
// page (RecentRequests, RecentHandler): rate, errors and latency by cluster.
type Metrics struct {
	clusterregistry.NopObserver

	syncDuration  prometheus.Histogram
	lockHold      prometheus.Histogram
	syncErrors    prometheus.Counter
	buildDuration *prometheus.HistogramVec
	buildFailures *prometheus.CounterVec
	probeDuration *prometheus.HistogramVec
	healthChanges *prometheus.CounterVec
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	clusters      *prometheus.Desc
	reg           *prometheus.Registry
	recent        *recent
}

// New registers the metrics with reg; Handler serves what reg gathers.
func New(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		reg:    reg,
		recent: newRecent(),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "clusterregistry_sync_duration_seconds", Help: "Wall time of a sync.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		lockHold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "clusterregistry_sync_lock_hold_seconds", Help: "How long a sync held the registry's write lock.",
			Buckets: prometheus.ExponentialBuckets(1e-8, 4, 10),
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clusterregistry_sync_errors_total", Help: "Syncs whose source could not be listed.",
		}),
		buildDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clusterregistry_build_duration_seconds", Help: "Duration of client builds.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"result"}),
		buildFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterregistry_build_failures_total", Help: "Failed client builds by cluster.",
		}, []string{"cluster"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clusterregistry_probe_duration_seconds", Help: "Duration of health probes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"result"}),
		healthChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterregistry_health_changes_total", Help: "Health state changes by new state.",
		}, []string{"to"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterregistry_requests_total", Help: "Requests of the clusters' clients.",
		}, []string{"cluster", "verb", "resource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clusterregistry_request_duration_seconds", Help: "Latency of the clusters' requests, to the response's headers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"cluster", "verb"}),
		clusters: prometheus.NewDesc("clusterregistry_clusters", "Known clusters by state.", []string{"state"}, nil),
	}
	reg.MustRegister(m.syncDuration, m.lockHold, m.syncErrors, m.buildDuration, m.buildFailures,
		m.probeDuration, m.healthChanges, m.requests, m.latency)
	return m
}

// WatchClusters registers clusterregistry_clusters{state}, read from list at
// every scrape: serving, failing (an error beside a serving client),
// unavailable (an error and no client), and each health state.
func (m *Metrics) WatchClusters(list func() []clusterregistry.ClusterInfo) {
	m.reg.MustRegister(clusterCollector{desc: m.clusters, list: list})
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// SyncDone records a sync.
func (m *Metrics) SyncDone(rep clusterregistry.SyncReport, err error) {
	if err != nil {
		m.syncErrors.Inc()
	}
	m.syncDuration.Observe(rep.Duration.Seconds())
	if rep.Published {
		m.lockHold.Observe(rep.LockHeld.Seconds())
	}
}

// BuildDone records a build.
func (m *Metrics) BuildDone(cluster string, d time.Duration, err error) {
	m.buildDuration.WithLabelValues(result(err)).Observe(d.Seconds())
	if err != nil {
		m.buildFailures.WithLabelValues(cluster).Inc()
	}
}

// ProbeDone records a health probe.
func (m *Metrics) ProbeDone(_ string, d time.Duration, err error) {
	m.probeDuration.WithLabelValues(result(err)).Observe(d.Seconds())
}

// HealthChanged records a change of health state.
func (m *Metrics) HealthChanged(_ string, _, to clusterregistry.Health) {
	m.healthChanges.WithLabelValues(to.State.String()).Inc()
}

// RequestDone records a request of a cluster's client.
func (m *Metrics) RequestDone(cluster string, r clusterregistry.RequestInfo) {
	resource := r.Resource
	if r.Group != "" {
		resource = r.Group + "/" + resource
	}
	if r.Subresource != "" {
		resource += "/" + r.Subresource
	}
	code := "error"
	if r.Code != 0 {
		code = strconv.Itoa(r.Code)
	}
	m.requests.WithLabelValues(cluster, r.Verb, resource, code).Inc()
	m.latency.WithLabelValues(cluster, r.Verb).Observe(r.Latency.Seconds())
	m.recent.add(cluster, r.Latency, r.Code == 0 || r.Code >= 500)
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

type clusterCollector struct {
	desc *prometheus.Desc
	list func() []clusterregistry.ClusterInfo
}

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{"serving": 0, "failing": 0, "unavailable": 0}
	for _, ci := range c.list() {
		switch {
		case ci.Serving && ci.Err == nil:
			counts["serving"]++
		case ci.Serving:
			counts["failing"]++
		default:
			counts["unavailable"]++
		}
		if ci.Serving {
			counts["health_"+ci.Health.State.String()]++
		}
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}
