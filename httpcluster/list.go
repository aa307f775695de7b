package httpcluster

import (
	"maps"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/version"

	"github.com/clusterregistry/clusterregistry"
)

// ClusterList is what ListHandler serves: one Snapshot of a Registry.
type ClusterList struct {
	// Generation is the Registry's generation (Snapshot.Generation).
	Generation uint64 `json:"generation"`
	// SyncedAt is when the sync that published the snapshot finished.
	SyncedAt time.Time `json:"syncedAt,omitzero"`
	// Default names the default cluster; empty when there is none.
	Default string `json:"default,omitempty"`
	// DefaultError says why there is no default, or why it is ambiguous.
	DefaultError string `json:"defaultError,omitempty"`
	// SourceError is the error of the source's latest List, if it failed:
	// the clusters are then those of the last good listing.
	SourceError string `json:"sourceError,omitempty"`
	// Clusters are all known clusters, in name order. Never nil.
	Clusters []ClusterStatus `json:"clusters"`
}

// ClusterStatus describes one cluster of a ClusterList.
type ClusterStatus struct {
	// Name is the cluster's name.
	Name string `json:"name"`
	// Default reports whether this is the default cluster.
	Default bool `json:"default"`
	// Serving reports whether the cluster has a client (its latest, or its
	// last good one when the latest build failed).
	Serving bool `json:"serving"`
	// ServerVersion is the GitVersion the serving client reports, when the
	// client type has a ServerVersion() version.Info method, as
	// *clusterregistry.Client does.
	ServerVersion string `json:"serverVersion,omitempty"`
	// Error is the cluster's latest error; the cluster may still be serving
	// its last good client.
	Error string `json:"error,omitempty"`
	// Generation is the Registry generation that first published the
	// serving client (ClusterInfo.BuiltGeneration): it changes exactly when
	// the client is replaced. Zero when not serving.
	Generation uint64 `json:"generation,omitempty"`
	// BuiltAt is when the serving client was built.
	BuiltAt time.Time `json:"builtAt,omitzero"`
	// Labels are the labels of the source's latest listing.
	Labels map[string]string `json:"labels,omitempty"`
	// Health is what the latest probes say of the serving client
	// (ClusterInfo.Health); nil when the cluster is not serving or has
	// never been probed.
	Health *HealthStatus `json:"health,omitempty"`
}

// HealthStatus is a serving cluster's health in a ClusterStatus.
type HealthStatus struct {
	// State is the health state: Ready, NotReady, Unreachable, Unauthorized
	// or Unknown (clusterregistry.HealthState).
	State string `json:"state"`
	// Since is when State last changed.
	Since time.Time `json:"since,omitzero"`
	// Error is the latest probe's error, if it failed; it may be set while
	// State is still Ready, until the failure threshold is reached.
	Error string `json:"error,omitempty"`
}

// healthStatus returns h as a HealthStatus, or nil for a cluster that has
// never been probed.
func healthStatus(h clusterregistry.Health) *HealthStatus {
	if h.State == clusterregistry.HealthUnknown && h.LastProbe.IsZero() {
		return nil
	}
	hs := &HealthStatus{State: h.State.String(), Since: h.Since}
	if h.Err != nil {
		hs.Error = h.Err.Error()
	}
	return hs
}

// versioner is the optional method of a client type that ClusterStatus
// reports. It must not do I/O: *clusterregistry.Client returns the version
// it saw when it was built.
type versioner interface {
	ServerVersion() version.Info
}

// Describe returns the ClusterList of snap. It does no I/O.
func Describe[T any](snap clusterregistry.Snapshot[T]) ClusterList {
	l := ClusterList{
		Generation: snap.Generation(),
		SyncedAt:   snap.SyncedAt(),
		Clusters:   make([]ClusterStatus, 0, snap.Len()),
	}
	name, err := snap.DefaultName() // an error with a name: several marked, the previous default kept
	l.Default = name
	if err != nil {
		l.DefaultError = err.Error()
	}
	if err := snap.SourceErr(); err != nil {
		l.SourceError = err.Error()
	}
	for info := range snap.Clusters() {
		cs := ClusterStatus{
			Name:       info.Name,
			Default:    info.Default,
			Serving:    info.Serving,
			Generation: info.BuiltGeneration,
			BuiltAt:    info.BuiltAt,
			Labels:     maps.Clone(info.Labels),
		}
		if info.Err != nil {
			cs.Error = info.Err.Error()
		}
		if info.Serving {
			cs.Health = healthStatus(info.Health)
			// The snapshot's client may have been replaced and released
			// since; ServerVersion only reads what was stored at build time.
			if client, err := snap.Get(info.Name); err == nil {
				if v, ok := any(client).(versioner); ok {
					cs.ServerVersion = v.ServerVersion().GitVersion
				}
			}
		}
		l.Clusters = append(l.Clusters, cs)
	}
	return l
}

// ListHandler returns a handler that answers GET and HEAD with the JSON
// ClusterList of reg's current Snapshot, and other methods with 405. It does
// no I/O and takes no lease.
func ListHandler[T any](reg *clusterregistry.Registry[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, Describe(reg.Snapshot()))
	})
}

// readOnly answers a request that is neither GET nor HEAD with 405, and
// reports whether it was one.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{
		Status: http.StatusMethodNotAllowed, Error: "method " + r.Method + " not allowed",
	})
	return false
}
