package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// Cluster describes one cluster that should exist, as a ClusterSource lists
// it. The Syncer treats a Cluster as read-only: it never changes Config or
// Labels, and it copies Config before it builds a client from it.
type Cluster struct {
	// Name identifies the cluster in the Registry. It must be non-empty and
	// unique within one listing.
	Name string

	// Config says how to reach the cluster and authenticate to it.
	Config *rest.Config

	// Default marks the cluster that Registry.Default returns. At most one
	// cluster of a listing may be marked; see Registry.Default for the rules.
	Default bool

	// Labels are free-form attributes for the caller (region, environment,
	// owner). Changing only the labels rebuilds no client (unless the source
	// changes the Revision with them).
	Labels map[string]string

	// Revision, when the source can supply one (a resourceVersion, a row
	// version, a file hash), replaces the comparison of Config for change
	// detection: a cluster whose previous and current listings both carry a
	// revision is rebuilt exactly when the revision differs.
	Revision string

	// Err, when set, says that the source knows this cluster but could not
	// turn its entry into a usable description (a malformed kubeconfig, a
	// missing server). The Syncer records it as the cluster's error and keeps
	// serving the cluster's last good client, if it has one. Err must name the
	// field at fault and must never contain a credential.
	Err error
}

// A ClusterSource lists the clusters that should exist. It is the pluggable
// backing store of a Syncer: kubeconfig files, Secrets in a hub cluster, a
// database, or anything else.
//
// List is called by one Syncer goroutine at a time, with no lock of the
// Registry held, and must honour ctx. It returns the full desired set on every
// call. An error from List means "the store could not be read": the Syncer
// then keeps its whole last good state. A problem with one entry belongs in
// that entry's Cluster.Err instead, so that the others carry on.
//
// The returned slice and everything it points to must not be changed after
// List returns.
type ClusterSource interface {
	List(ctx context.Context) ([]Cluster, error)
}

// A Watcher is a ClusterSource that can tell when its content has changed,
// so that a change reaches the Registry in about a second instead of at the
// next periodic sync.
//
// Syncer.Run calls Watch once, in a goroutine of its own, and cancels ctx
// when it stops; Watch must return soon after. Watch calls changed once as
// soon as it is watching (a change made before that would otherwise go
// unseen until the next periodic sync), and then whenever the next List may
// return something new. changed never blocks and may be called any number of
// times: calls during a sync coalesce into one more sync. A Watch that
// returns early with an error is logged; periodic syncs carry on.
type Watcher interface {
	ClusterSource
	Watch(ctx context.Context, changed func()) error
}

// A Reasoner is a ClusterSource that can say why a cluster entered or left
// its latest listing, when that is not the cluster's own doing: a source that
// filters another (a shard of the clusters, say) moved it. After each List,
// the Syncer calls Reason for every cluster that it adds or removes, with no
// lock of the Registry held, and puts the answer in the EventAdded or
// EventRemoved; "" means no reason to give.
type Reasoner interface {
	ClusterSource
	Reason(name string) string
}

// SourceFunc adapts a function to a ClusterSource.
type SourceFunc func(ctx context.Context) ([]Cluster, error)

// List calls f(ctx).
func (f SourceFunc) List(ctx context.Context) ([]Cluster, error) { return f(ctx) }

// MemorySource is a ClusterSource held in memory, for clusters that a program
// adds and removes itself, and for tests. It is a Watcher: every change
// triggers the Syncers that watch it. All methods are safe for concurrent use.
// The zero value is an empty source, ready to use.
type MemorySource struct {
	mu       sync.Mutex // protects clusters and watchers
	clusters []Cluster  // sorted by name; replaced, never changed in place: List hands it out
	watchers map[*func()]struct{}
}

// NewMemorySource returns a MemorySource holding clusters.
func NewMemorySource(clusters ...Cluster) *MemorySource {
	m := &MemorySource{}
	m.clusters = sortedClusters(clusters)
	return m
}

// sortedClusters returns a copy of clusters sorted by name. A listing sorted
// by name is cheaper for the Syncer to check for duplicate names.
func sortedClusters(clusters []Cluster) []Cluster {
	out := slices.Clone(clusters)
	slices.SortStableFunc(out, byName)
	return out
}

func byName(a, b Cluster) int { return strings.Compare(a.Name, b.Name) }

// List returns the current clusters, sorted by name. It never fails.
func (m *MemorySource) List(context.Context) ([]Cluster, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clusters, nil
}

// Set replaces all clusters. Their configs and labels must not be changed
// after the call: a Syncer takes a config object it has already built from as
// unchanged without comparing it, so a change goes through a new object.
func (m *MemorySource) Set(clusters ...Cluster) {
	m.update(func([]Cluster) []Cluster { return sortedClusters(clusters) })
}

// Upsert adds c, or replaces the cluster of the same name. As with Set, c's
// config must not be changed after the call: pass a new object.
func (m *MemorySource) Upsert(c Cluster) {
	m.update(func(old []Cluster) []Cluster {
		i, found := slices.BinarySearchFunc(old, c, byName)
		next := slices.Clone(old)
		if !found {
			return slices.Insert(next, i, c)
		}
		next[i] = c
		return next
	})
}

// Delete removes the cluster named name, if there is one.
func (m *MemorySource) Delete(name string) {
	m.update(func(old []Cluster) []Cluster {
		return slices.DeleteFunc(slices.Clone(old), func(o Cluster) bool { return o.Name == name })
	})
}

// Watch calls changed when it starts and after every Set, Upsert and Delete,
// until ctx is done.
func (m *MemorySource) Watch(ctx context.Context, changed func()) error {
	key := &changed
	m.mu.Lock()
	if m.watchers == nil {
		m.watchers = make(map[*func()]struct{})
	}
	m.watchers[key] = struct{}{}
	m.mu.Unlock()
	changed() // anything set before the watch began is seen by the next sync

	<-ctx.Done()

	m.mu.Lock()
	delete(m.watchers, key)
	m.mu.Unlock()
	return nil
}

func (m *MemorySource) update(next func(old []Cluster) []Cluster) {
	m.mu.Lock()
	m.clusters = next(m.clusters)
	notify := make([]func(), 0, len(m.watchers))
	for w := range m.watchers {
		notify = append(notify, *w)
	}
	m.mu.Unlock()

	// Outside the lock: a watcher's callback is the caller's code.
	for _, changed := range notify {
		changed()
	}
}

// MaxNameLength is the longest cluster name ValidateName accepts.
const MaxNameLength = 253

// ValidateName checks that name can serve as a cluster name: 1 to 253
// characters, letters, digits and . _ : @ -, starting and ending with a letter
// or digit. Such a name is safe in a URL path segment, an HTTP header, a
// metric label and a log line. The Syncer ignores listed clusters whose name
// fails it (SyncReport.Invalid). Kubeconfig context names with other
// characters (EKS's "arn:...:cluster/name", say) need a source's renaming.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > MaxNameLength:
		return fmt.Errorf("must be at most %d characters, not %d", MaxNameLength, len(name))
	case !validNameChars(name):
		return errors.New("must be letters, digits and . _ : @ -, starting and ending with a letter or digit")
	}
	return nil
}

// validNameChars reports whether name matches
// ^[A-Za-z0-9]([A-Za-z0-9._:@-]*[A-Za-z0-9])?$ without a regexp: every sync
// checks every listed name, and the regexp was a third of a sync's time at
// 10,000 clusters.
func validNameChars(name string) bool {
	alnum := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && ((i == 0 || i == len(name)-1) || !strings.ContainsRune("._:@-", rune(c))) {
			return false
		}
	}
	return true
}
