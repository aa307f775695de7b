package clusterregistrytest

import (
	"context"
	"sync"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// NewCluster returns a description of a cluster called name, at
// https://<name>.cluster.test with the bearer token "token-<name>". Nothing
// answers at that address: it suits a FakeBuilder, which never dials. For a
// cluster that answers, use Server.Cluster.
func NewCluster(name string) clusterregistry.Cluster {
	return clusterregistry.Cluster{
		Name: name,
		Config: &rest.Config{
			Host:        "https://" + name + ".cluster.test",
			BearerToken: "token-" + name,
		},
	}
}

// NewDefaultCluster returns NewCluster(name) marked as the default cluster.
func NewDefaultCluster(name string) clusterregistry.Cluster {
	c := NewCluster(name)
	c.Default = true
	return c
}

// WithToken returns a copy of c whose config carries token instead. The
// Syncer sees a changed description and builds the cluster a new client, as
// it would after a credential rotation. c is not changed.
func WithToken(c clusterregistry.Cluster, token string) clusterregistry.Cluster {
	c.Config = restconfig.Copy(c.Config)
	c.Config.BearerToken = token
	return c
}

// Source is a clusterregistry.MemorySource that a test can also make fail:
// Fail makes List return an error, BlackHole makes it block until its
// context ends, and Heal ends both. It is a Watcher, and every change,
// failure and heal triggers the Syncers that watch it. All methods are safe
// for concurrent use.
type Source struct {
	*clusterregistry.MemorySource // Set, Upsert and Delete

	mu        sync.Mutex // protects the fields below
	err       error
	blackHole chan struct{} // non-nil while black-holed; closed by Heal
	lists     int
	watchers  map[*func()]struct{}
}

var _ clusterregistry.Watcher = (*Source)(nil)

// NewSource returns a Source holding clusters.
func NewSource(clusters ...clusterregistry.Cluster) *Source {
	return &Source{
		MemorySource: clusterregistry.NewMemorySource(clusters...),
		watchers:     make(map[*func()]struct{}),
	}
}

// List returns the clusters, or the error set by Fail, or blocks until ctx
// ends while the Source is black-holed. It counts its calls.
func (s *Source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	s.mu.Lock()
	s.lists++
	err, hole := s.err, s.blackHole
	s.mu.Unlock()
	if hole != nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-hole:
		}
	}
	if err != nil {
		return nil, err
	}
	return s.MemorySource.List(ctx)
}

// Watch reports every change until ctx is done.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	key := &changed
	s.mu.Lock()
	s.watchers[key] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, key)
		s.mu.Unlock()
	}()
	// The MemorySource reports Set, Upsert and Delete; s reports the rest.
	return s.MemorySource.Watch(ctx, changed)
}

// Fail makes every later List fail with err, until Heal. The Syncer then
// keeps its last good state and reports err as the source error.
func (s *Source) Fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.notify()
}

// BlackHole makes every later List block until its context ends (the
// Syncer's source timeout), as a store that does not answer would, until
// Heal.
func (s *Source) BlackHole() {
	s.mu.Lock()
	if s.blackHole == nil {
		s.blackHole = make(chan struct{})
	}
	s.mu.Unlock()
	s.notify()
}

// Heal ends Fail and BlackHole; a List blocked by BlackHole returns the
// clusters at once.
func (s *Source) Heal() {
	s.mu.Lock()
	s.err = nil
	if s.blackHole != nil {
		close(s.blackHole)
		s.blackHole = nil
	}
	s.mu.Unlock()
	s.notify()
}

// Lists returns how many times List was called.
func (s *Source) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

func (s *Source) notify() {
	s.mu.Lock()
	notify := make([]func(), 0, len(s.watchers))
	for w := range s.watchers {
		notify = append(notify, *w)
	}
	s.mu.Unlock()
	// Outside the lock: changed is the Syncer's code.
	for _, changed := range notify {
		changed()
	}
}
