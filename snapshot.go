package clusterregistry

import (
	"iter"
	"time"
)

// A Snapshot is a consistent, read-only view of a Registry at one generation:
// clusters, errors and the default all come from the same sync. Taking one
// costs O(1) and copies nothing; it is safe to keep and to use from any
// goroutine with no lock held, and later syncs never change it.
//
// A Snapshot does not hold its clients: one that a later sync replaced may
// already be released. Use Registry.Lease to keep a client for long.
// The zero Snapshot is empty.
type Snapshot[T any] struct {
	s *state[T]
}

// ClusterInfo describes one cluster of a Snapshot.
type ClusterInfo struct {
	Name string
	// Default reports whether this is the snapshot's default cluster.
	Default bool
	// Labels are the labels of the latest listing. They are shared: do not
	// change them.
	Labels map[string]string
	// Revision is the source's revision of the latest listing, if any.
	Revision string
	// Serving reports whether the cluster has a client: its latest build, or
	// its last good one if the latest failed.
	Serving bool
	// Err is the cluster's latest error (a *ClusterError), or nil.
	Err error
	// BuiltAt is when the serving client was built; zero if not Serving.
	BuiltAt time.Time
	// BuiltGeneration is the generation that first published the serving
	// client; zero if not Serving.
	BuiltGeneration uint64
	// Health is what the latest probes say of the serving client
	// (WithHealthCheck). Unlike the rest of a Snapshot it is live: it is read
	// when Cluster or Clusters is called, not when the Snapshot was taken.
	Health Health
}

// Generation counts the states the Registry has published, starting at 1
// with the first sync. A sync that changes nothing publishes nothing.
func (s Snapshot[T]) Generation() uint64 {
	if s.s == nil {
		return 0
	}
	return s.s.generation
}

// SyncedAt returns when the sync that published this snapshot finished.
func (s Snapshot[T]) SyncedAt() time.Time {
	if s.s == nil {
		return time.Time{}
	}
	return s.s.syncedAt
}

// Len returns the number of known clusters, with or without a client.
func (s Snapshot[T]) Len() int {
	if s.s == nil {
		return 0
	}
	return len(s.s.sorted)
}

// Names returns the names of all known clusters, sorted. The slice is the
// caller's.
func (s Snapshot[T]) Names() []string {
	if s.s == nil {
		return nil
	}
	names := make([]string, len(s.s.sorted))
	for i, m := range s.s.sorted {
		names[i] = m.name
	}
	return names
}

// Get returns the client of the cluster called name, with the errors of
// Registry.Get.
func (s Snapshot[T]) Get(name string) (T, error) { return s.state().get(name) }

// DefaultName returns the name of the default cluster, by these rules,
// which hold whatever the timing of the builds:
//   - exactly one cluster of the listing is marked Default: it is the default,
//     even while it has no working client (Default then returns its error),
//     or while its first build runs;
//   - none is marked: there is no default, and the error wraps
//     ErrNoDefaultCluster;
//   - several are marked: if the default before that listing is one of them
//     it stays the default, otherwise there is none; either way the error
//     wraps ErrNoDefaultCluster and names them all.
func (s Snapshot[T]) DefaultName() (string, error) {
	st := s.state()
	if st.defaultName == "" {
		return st.resolveDefault()
	}
	return st.defaultName, st.defaultErr
}

// Default returns the client of the default cluster (see DefaultName). While
// the default cluster fails, it returns its last good client if it has one,
// and its *ClusterError otherwise.
func (s Snapshot[T]) Default() (T, error) { return s.state().getDefault() }

// SourceErr returns the error of the source's latest List, or nil. While it is
// set, the snapshot holds the last state that the source listed successfully.
// Once the Syncer has stopped it is ErrStopped, and the snapshot is empty.
func (s Snapshot[T]) SourceErr() error { return s.state().sourceErr }

// Err returns the latest error of the cluster called name (a *ClusterError),
// or nil if its latest build succeeded. For a name it does not know, the
// error is that of Get.
func (s Snapshot[T]) Err(name string) error { return s.state().clusterErr(name) }

// Cluster describes the cluster called name.
func (s Snapshot[T]) Cluster(name string) (ClusterInfo, bool) {
	m, ok := s.state().members[name]
	if !ok {
		return ClusterInfo{}, false
	}
	return s.info(m), true
}

// Clusters yields every known cluster in name order.
func (s Snapshot[T]) Clusters() iter.Seq[ClusterInfo] {
	st := s.state()
	return func(yield func(ClusterInfo) bool) {
		for _, m := range st.sorted {
			if !yield(s.info(m)) {
				return
			}
		}
	}
}

// All yields the name and client of every cluster that has a client, in name
// order.
func (s Snapshot[T]) All() iter.Seq2[string, T] {
	st := s.state()
	return func(yield func(string, T) bool) {
		for _, m := range st.sorted {
			if m.h != nil && !yield(m.name, m.client) {
				return
			}
		}
	}
}

func (s Snapshot[T]) state() *state[T] {
	if s.s == nil {
		return &state[T]{}
	}
	return s.s
}

func (s Snapshot[T]) info(m *member[T]) ClusterInfo {
	ci := ClusterInfo{
		Name:     m.name,
		Default:  m.name == s.s.defaultName,
		Labels:   m.labels,
		Revision: m.revision,
	}
	if m.fail != nil {
		ci.Err = m.fail.err
	}
	if m.h != nil {
		ci.Serving = true
		ci.BuiltAt = m.h.builtAt
		ci.BuiltGeneration = m.h.generation
		ci.Health = m.h.loadHealth()
	}
	return ci
}
