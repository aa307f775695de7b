package clusterregistrytest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// DefaultVersion is the server version a FakeClient reports unless
// FakeBuilder.SetVersion says otherwise.
var DefaultVersion = version.Info{
	Major:      "1",
	Minor:      "37",
	GitVersion: "v1.37.0-fake",
	Platform:   "linux/amd64",
}

// FakeClient is the client a FakeBuilder builds: a client-go fake clientset
// (k8s.io/client-go/kubernetes/fake) holding the objects seeded for its
// cluster, with the methods of *clusterregistry.Client that do not need a
// network. A service whose handlers take a small interface, such as
//
//	type ClusterClient interface {
//		Kubernetes() kubernetes.Interface
//		ServerVersion() version.Info
//	}
//
// runs with *clusterregistry.Client in production and *FakeClient in tests.
// A FakeClient is safe for concurrent use.
type FakeClient struct {
	name      string
	config    *rest.Config
	clientset *fake.Clientset
	version   version.Info
	build     int
	released  atomic.Int32
}

// Name returns the name of the cluster the client was built for.
func (c *FakeClient) Name() string { return c.name }

// Config returns a copy of the config the client was built from.
func (c *FakeClient) Config() *rest.Config { return restconfig.Copy(c.config) }

// Kubernetes returns the fake clientset as a kubernetes.Interface.
func (c *FakeClient) Kubernetes() kubernetes.Interface { return c.clientset }

// Clientset returns the fake clientset itself, for its recorded actions
// (Actions), reactors (PrependReactor) and object tracker (Tracker).
func (c *FakeClient) Clientset() *fake.Clientset { return c.clientset }

// ServerVersion returns the version set for the cluster when the client was
// built. The clientset's discovery client reports it too.
func (c *FakeClient) ServerVersion() version.Info { return c.version }

// Build returns the client's build number: 1 for the first client the
// FakeBuilder built, counting every cluster.
func (c *FakeClient) Build() int { return c.build }

// Released reports whether the Syncer has released the client to its
// FakeBuilder.
func (c *FakeClient) Released() bool { return c.released.Load() > 0 }

// String returns the cluster's name and the build number, such as "prod#3".
func (c *FakeClient) String() string { return fmt.Sprintf("%s#%d", c.name, c.build) }

// FakeBuilder is a clusterregistry.Builder of *FakeClient: each build makes a
// new fake clientset seeded with the objects given to Seed for its cluster.
// Builds can be made to fail (Fail) or to hang until their deadline
// (BlackHole), per cluster. It records every client it built and released,
// so a test can check that the Syncer released each exactly once
// (CheckReleased). The zero value is not usable; call NewFakeBuilder. All
// methods are safe for concurrent use.
type FakeBuilder struct {
	mu        sync.Mutex // protects the fields below
	seeds     map[string][]runtime.Object
	versions  map[string]version.Info
	failures  map[string]error
	holes     map[string]chan struct{} // closed by Heal
	builds    int
	built     []*FakeClient
	doubles   []*FakeClient // released more than once
	strangers int           // releases of clients this builder did not build
}

var _ clusterregistry.Builder[*FakeClient] = (*FakeBuilder)(nil)

// NewFakeBuilder returns a FakeBuilder with nothing seeded.
func NewFakeBuilder() *FakeBuilder {
	return &FakeBuilder{
		seeds:    make(map[string][]runtime.Object),
		versions: make(map[string]version.Info),
		failures: make(map[string]error),
		holes:    make(map[string]chan struct{}),
	}
}

// Seed adds objs to the objects that every later client of cluster starts
// with. Each client gets its own copies: what a test changes through one
// client, another never sees. Seed panics on an object the fake clientset
// does not know (a type outside client-go's scheme).
func (b *FakeBuilder) Seed(cluster string, objs ...runtime.Object) {
	// Fail now, in the test's goroutine, rather than in a later build.
	if _, err := newClientset(objs); err != nil {
		panic(fmt.Sprintf("clusterregistrytest: seed for cluster %q: %v", cluster, err))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seeds[cluster] = append(b.seeds[cluster], objs...)
}

// SetVersion sets the server version of later clients of cluster.
func (b *FakeBuilder) SetVersion(cluster string, v version.Info) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.versions[cluster] = v
}

// Fail makes later builds of cluster fail with err (nil ends it). The Syncer
// keeps the cluster's last good client and records err beside it.
func (b *FakeBuilder) Fail(cluster string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		delete(b.failures, cluster)
		return
	}
	b.failures[cluster] = err
}

// BlackHole makes later builds of cluster block until their context ends
// (the Syncer's build timeout), as an API server that never answers would,
// until Heal.
func (b *FakeBuilder) BlackHole(cluster string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holes[cluster] == nil {
		b.holes[cluster] = make(chan struct{})
	}
}

// Heal ends Fail and BlackHole for cluster; builds blocked by BlackHole go on
// at once.
func (b *FakeBuilder) Heal(cluster string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.failures, cluster)
	if h := b.holes[cluster]; h != nil {
		close(h)
		delete(b.holes, cluster)
	}
}

// Build makes a *FakeClient for c, unless Fail or BlackHole say otherwise.
func (b *FakeBuilder) Build(ctx context.Context, c clusterregistry.Cluster) (*FakeClient, error) {
	b.mu.Lock()
	hole := b.holes[c.Name]
	b.mu.Unlock()
	if hole != nil {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("server version: %w", ctx.Err())
		case <-hole:
		}
	}

	b.mu.Lock()
	failure, seeds := b.failures[c.Name], slices.Clone(b.seeds[c.Name])
	v, ok := b.versions[c.Name]
	b.mu.Unlock()
	if failure != nil {
		return nil, failure
	}
	if !ok {
		v = DefaultVersion
	}
	// Made with no lock held, so that the Syncer's parallel builds stay
	// parallel.
	cs, err := newClientset(seeds)
	if err != nil {
		return nil, err // Seed checked the objects; unreachable
	}
	cs.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &v

	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds++
	client := &FakeClient{name: c.Name, config: c.Config, clientset: cs, version: v, build: b.builds}
	b.built = append(b.built, client)
	return client, nil
}

// newClientset returns a fake clientset holding objs, or the error of the
// first object it refuses.
func newClientset(objs []runtime.Object) (cs *fake.Clientset, err error) {
	// The fake clientset panics on an object it cannot track.
	defer func() {
		if r := recover(); r != nil {
			cs, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return fake.NewClientset(objs...), nil
}

// Release records that client was released.
func (b *FakeBuilder) Release(client *FakeClient) {
	n := client.released.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Contains(b.built, client) {
		b.strangers++
	}
	if n == 2 {
		b.doubles = append(b.doubles, client)
	}
}

// Client returns the latest client built for cluster, or nil.
func (b *FakeBuilder) Client(cluster string) *FakeClient {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range slices.Backward(b.built) {
		if c.name == cluster {
			return c
		}
	}
	return nil
}

// Built returns every client built so far, oldest first.
func (b *FakeBuilder) Built() []*FakeClient {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.built)
}

// Live returns the clients built and not yet released, oldest first.
func (b *FakeBuilder) Live() []*FakeClient {
	b.mu.Lock()
	defer b.mu.Unlock()
	var live []*FakeClient
	for _, c := range b.built {
		if !c.Released() {
			live = append(live, c)
		}
	}
	return live
}

// CheckReleased fails t, without stopping it, unless every client the
// builder built was released exactly once and nothing else was released.
// Call it after the Syncer's Run has returned (StartSyncer's cleanup waits
// for that).
func (b *FakeBuilder) CheckReleased(t testing.TB) {
	t.Helper()
	if live := b.Live(); len(live) > 0 {
		t.Errorf("clusterregistrytest: clients never released: %v", live)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.doubles) > 0 {
		t.Errorf("clusterregistrytest: clients released more than once: %v", b.doubles)
	}
	if b.strangers > 0 {
		t.Errorf("clusterregistrytest: %d releases of clients this builder did not build", b.strangers)
	}
}
