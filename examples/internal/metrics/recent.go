package metrics

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// RequestStats is one cluster's requests over the last minute, for a page
// that shows them without a Prometheus server to ask.
type RequestStats struct {
	// Requests is how many requests ended in the window.
	Requests int `json:"requests"`
	// PerSecond is Requests over the window's length.
	PerSecond float64 `json:"perSecond"`
	// Errors counts the requests that got no response or a 5xx.
	Errors int `json:"errors"`
	// MeanMs is their mean latency, in milliseconds.
	MeanMs float64 `json:"meanMs"`
	// P99Ms is an upper bound of their 99th percentile latency: the upper
	// bound of the latency bucket that holds it (the last bucket has none,
	// and reports the window's slowest request).
	P99Ms float64 `json:"p99Ms"`
}

const (
	slotLength = 10 * time.Second
	slotCount  = 6 // a minute
)

// latencyBounds are the upper bounds of the latency buckets of p99, as in
// clusterregistry_request_duration_seconds: 1ms, 4ms, ... 16s.
var latencyBounds = [...]time.Duration{
	time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond, 64 * time.Millisecond,
	256 * time.Millisecond, 1024 * time.Millisecond, 4096 * time.Millisecond, 16384 * time.Millisecond,
}

// slot holds the requests of one slotLength of time.
type slot struct {
	index   int64 // the slot's start, in slotLengths since the epoch
	count   int
	errors  int
	sum     time.Duration
	max     time.Duration
	buckets [len(latencyBounds) + 1]int
}

// recent keeps each cluster's last minute of requests in slotCount slots.
type recent struct {
	now func() time.Time
	mu  sync.Mutex // protects windows: held to add a request or read them, nothing else
	// windows are per cluster; a cluster with no request in the last
	// minute is dropped when the stats are read, so removed clusters go.
	windows map[string]*[slotCount]slot
}

func newRecent() *recent {
	return &recent{now: time.Now, windows: map[string]*[slotCount]slot{}}
}

func (r *recent) add(cluster string, latency time.Duration, failed bool) {
	index := r.now().UnixNano() / int64(slotLength)
	b := len(latencyBounds)
	for i, bound := range latencyBounds {
		if latency <= bound {
			b = i
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.windows[cluster]
	if w == nil {
		w = new([slotCount]slot)
		r.windows[cluster] = w
	}
	s := &w[index%slotCount]
	if s.index != index {
		*s = slot{index: index}
	}
	s.count++
	s.sum += latency
	s.max = max(s.max, latency)
	s.buckets[b]++
	if failed {
		s.errors++
	}
}

// stats returns every cluster's stats of the last minute.
func (r *recent) stats() map[string]RequestStats {
	now := r.now()
	index := now.UnixNano() / int64(slotLength)
	// The current slot is partial: the window is the slots before it and
	// the part of it gone by.
	window := time.Duration(slotCount-1)*slotLength + time.Duration(now.UnixNano()%int64(slotLength))
	out := map[string]RequestStats{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for cluster, w := range r.windows {
		var sum slot
		for _, s := range w {
			if s.index > index-slotCount && s.index <= index {
				sum.count, sum.errors, sum.sum = sum.count+s.count, sum.errors+s.errors, sum.sum+s.sum
				sum.max = max(sum.max, s.max)
				for i, n := range s.buckets {
					sum.buckets[i] += n
				}
			}
		}
		if sum.count == 0 {
			delete(r.windows, cluster)
			continue
		}
		out[cluster] = sum.stats(window)
	}
	return out
}

// stats returns the RequestStats of s, the sum of a window's slots.
func (s *slot) stats(window time.Duration) RequestStats {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	st := RequestStats{
		Requests: s.count, Errors: s.errors,
		PerSecond: float64(s.count) / window.Seconds(),
		MeanMs:    ms(s.sum / time.Duration(s.count)),
		P99Ms:     ms(s.max),
	}
	seen, want := 0, (s.count*99+99)/100 // the rank of the 99th percentile, rounded up
	for i, n := range s.buckets[:len(latencyBounds)] {
		if seen += n; seen >= want {
			st.P99Ms = ms(min(latencyBounds[i], s.max))
			break
		}
	}
	return st
}

// RecentRequests returns, by cluster, the requests of the clusters' clients
// over the last minute (ClientBuilder.Observer); a cluster with none is
// left out.
func (m *Metrics) RecentRequests() map[string]RequestStats { return m.recent.stats() }

// RecentHandler serves RecentRequests as a JSON object keyed by cluster.
func (m *Metrics) RecentHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(m.RecentRequests())
	})
}
