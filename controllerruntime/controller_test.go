package controllerruntime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/controllerruntime/internal/fakeapi"
)

// env is a Syncer over fake API servers, with a Builder, for one test.
type env struct {
	t       testing.TB
	servers map[string]*fakeapi.Server
	source  *clusterregistry.MemorySource
	syncer  *clusterregistry.Syncer[*Cluster]
}

func newEnv(t *testing.T, names ...string) *env { return newEnvTB(t, names...) }

func newEnvTB(t testing.TB, names ...string) *env {
	t.Helper()
	e := &env{t: t, servers: map[string]*fakeapi.Server{}, source: clusterregistry.NewMemorySource()}
	for _, n := range names {
		e.addServer(n)
	}
	syncer, err := clusterregistry.NewSyncer(e.source, Builder{},
		clusterregistry.WithBuildTimeout(2*time.Second))
	require.NoError(t, err)
	e.syncer = syncer
	e.sync()
	t.Cleanup(func() {
		require.NoError(t, syncer.Close())
		for _, s := range e.servers {
			s.Close()
		}
	})
	return e
}

func (e *env) addServer(name string) *fakeapi.Server {
	s := fakeapi.New()
	e.servers[name] = s
	e.source.Upsert(clusterregistry.Cluster{Name: name, Config: s.Config()})
	return s
}

func (e *env) sync() clusterregistry.SyncReport {
	e.t.Helper()
	rep, err := e.syncer.Sync(context.Background())
	require.NoError(e.t, err)
	return rep
}

func (e *env) reg() *clusterregistry.Registry[*Cluster] { return e.syncer.Registry() }

func configMap(name string, data string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string]string{"v": data}}
}

// recorder is a reconciler that records each request, and the error of
// getting its cluster's client.
type recorder struct {
	reg *clusterregistry.Registry[*Cluster]

	mu      sync.Mutex // protects the fields below
	seen    map[Request]int
	clients map[string]*Cluster
	errs    []error
}

func newRecorder(reg *clusterregistry.Registry[*Cluster]) *recorder {
	return &recorder{reg: reg, seen: map[Request]int{}, clients: map[string]*Cluster{}}
}

func (r *recorder) Reconcile(ctx context.Context, req Request) (reconcile.Result, error) {
	cl, err := r.reg.Get(req.ClusterName)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[req]++
	if err != nil {
		r.errs = append(r.errs, err)
		return reconcile.Result{}, err
	}
	r.clients[req.ClusterName] = cl
	return reconcile.Result{}, nil
}

func (r *recorder) count(req Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[req]
}

func (r *recorder) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

func cmReq(cluster, name string) Request {
	return Request{ClusterName: cluster, Request: reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: name}}}
}

// start runs c until the test ends.
func start(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }() // joined in the cleanup
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

const wait = 20 * time.Second // a generous bound for a fake server; not a timing assertion

func TestControllerReconcilesEveryCluster(t *testing.T) {
	e := newEnv(t, "a", "b")
	e.servers["a"].Apply(configMap("one", "1"))
	e.servers["b"].Apply(configMap("two", "2"))
	rec := newRecorder(e.reg())
	c, err := NewController("test", e.reg(), rec, For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	start(t, c)

	require.Eventually(t, func() bool { return rec.count(cmReq("a", "one")) > 0 && rec.count(cmReq("b", "two")) > 0 }, wait, time.Millisecond)
	e.servers["b"].Apply(configMap("three", "3"))
	require.Eventually(t, func() bool { return rec.count(cmReq("b", "three")) > 0 }, wait, time.Millisecond)
	assert.Zero(t, rec.count(cmReq("a", "three")), "a request carries its own cluster")

	// A third cluster arrives: its objects are reconciled.
	e.addServer("c").Apply(configMap("four", "4"))
	e.sync()
	require.Eventually(t, func() bool { return rec.count(cmReq("c", "four")) > 0 }, wait, time.Millisecond)

	// One goes: its watches end, and the server sees its connections close.
	e.source.Delete("a")
	e.sync()
	require.Eventually(t, func() bool { return !contains(c.Engaged(), "a") }, wait, time.Millisecond)
	require.Eventually(t, func() bool { return e.servers["a"].Watchers() == 0 && e.servers["a"].Connections() == 0 }, wait, time.Millisecond)
	assert.Empty(t, rec.errors(), "no reconcile found its cluster missing")
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestControllerRelistsAReplacedCluster rotates a cluster's token: the
// Controller watches the new client, every object is reconciled again on
// it, and no reconcile ever finds the cluster missing.
func TestControllerRelistsAReplacedCluster(t *testing.T) {
	e := newEnv(t, "a")
	for i := range 10 {
		e.servers["a"].Apply(configMap(fmt.Sprint("cm-", i), "x"))
	}
	rec := newRecorder(e.reg())
	c, err := NewController("test", e.reg(), rec, For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	start(t, c)
	require.Eventually(t, func() bool { return rec.count(cmReq("a", "cm-9")) > 0 }, wait, time.Millisecond)
	old, err := e.reg().Get("a")
	require.NoError(t, err)

	cfg := e.servers["a"].Config()
	cfg.BearerToken = e.servers["a"].RotateToken()
	e.source.Upsert(clusterregistry.Cluster{Name: "a", Config: cfg})
	rep := e.sync()
	require.Equal(t, []string{"a"}, rep.Updated)
	current, err := e.reg().Get("a")
	require.NoError(t, err)
	require.NotSame(t, old, current)

	for i := range 10 {
		r := cmReq("a", fmt.Sprint("cm-", i))
		require.Eventually(t, func() bool { return rec.count(r) >= 2 }, wait, time.Millisecond, "%s re-listed on the new client", r)
	}
	rec.mu.Lock()
	assert.Same(t, current, rec.clients["a"])
	rec.mu.Unlock()
	assert.Empty(t, rec.errors(), "no not-found gap")
}

// TestControllerBlackHoledClusterDelaysNoOther silences one engaged cluster
// and adds one that cannot be reached: the other cluster's changes are
// reconciled meanwhile.
func TestControllerBlackHoledClusterDelaysNoOther(t *testing.T) {
	e := newEnv(t, "a", "b")
	rec := newRecorder(e.reg())
	c, err := NewController("test", e.reg(), rec, For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	start(t, c)
	require.Eventually(t, func() bool { return len(c.Engaged()) == 2 }, wait, time.Millisecond)

	e.servers["b"].BlackHole()
	e.addServer("c").BlackHole()
	rep := e.sync() // c's build fails within the build timeout
	assert.Equal(t, []string{"c"}, rep.Failed)
	assert.ErrorContains(t, e.reg().Snapshot().Err("c"), `cluster "c"`)

	e.servers["a"].Apply(configMap("after", "1"))
	require.Eventually(t, func() bool { return rec.count(cmReq("a", "after")) > 0 }, wait, time.Millisecond)
	e.servers["b"].Heal()
	e.servers["c"].Heal()
}

func TestControllerDropsRequestsOfAClusterThatWent(t *testing.T) {
	e := newEnv(t, "a")
	rec := newRecorder(e.reg())
	c, err := NewController("test", e.reg(), rec, For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	c.Enqueue(cmReq("nowhere", "x"))
	c.Enqueue(cmReq("a", "x"))
	start(t, c)
	require.Eventually(t, func() bool { return rec.count(cmReq("a", "x")) > 0 }, wait, time.Millisecond)
	assert.Zero(t, rec.count(cmReq("nowhere", "x")), "the reconciler never sees a cluster that is not in the Registry")
}

func TestControllerBroadcastsToEveryCluster(t *testing.T) {
	e := newEnv(t, "hub", "a")
	hub, err := e.reg().Get("hub")
	require.NoError(t, err)
	e.servers["hub"].Apply(configMap("shared", "1"))
	rec := newRecorder(e.reg())
	c, err := NewController("test", e.reg(), rec, Broadcasts(hub.GetCache(), &corev1.ConfigMap{}))
	require.NoError(t, err)
	start(t, c)
	require.Eventually(t, func() bool { return rec.count(cmReq("a", "shared")) > 0 }, wait, time.Millisecond)

	e.addServer("late")
	e.sync()
	require.Eventually(t, func() bool { return rec.count(cmReq("late", "shared")) > 0 }, wait, time.Millisecond, "a later cluster gets the hub's keys")
	n := rec.count(cmReq("a", "shared"))
	e.servers["hub"].Apply(configMap("shared", "2"))
	require.Eventually(t, func() bool { return rec.count(cmReq("a", "shared")) > n }, wait, time.Millisecond)
}

func TestControllerRetriesAndSurvivesPanics(t *testing.T) {
	e := newEnv(t, "a")
	var mu sync.Mutex
	calls := 0
	c, err := NewController("test", e.reg(), reconcile.TypedFunc[Request](func(ctx context.Context, r Request) (reconcile.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		switch calls {
		case 1:
			panic("boom")
		case 2:
			return reconcile.Result{}, errors.New("transient")
		}
		return reconcile.Result{}, nil
	}), For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	c.Enqueue(cmReq("a", "x"))
	start(t, c)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return calls == 3 }, wait, time.Millisecond)
}

func TestControllerStartsOnce(t *testing.T) {
	e := newEnv(t)
	c, err := NewController("test", e.reg(), newRecorder(e.reg()), For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	start(t, c)
	require.Eventually(t, func() bool { return c.started.Load() }, wait, time.Millisecond)
	assert.ErrorIs(t, c.Start(context.Background()), errAlreadyStarted)
}

func TestNewControllerRejectsBadArguments(t *testing.T) {
	e := newEnv(t)
	rec := newRecorder(e.reg())
	cm := For(&corev1.ConfigMap{})
	tests := []struct {
		name string
		give func() (*Controller, error)
		want error
	}{
		{"no name", func() (*Controller, error) { return NewController("", e.reg(), rec, cm) }, errNoName},
		{"nil registry", func() (*Controller, error) { return NewController("c", nil, rec, cm) }, errNoRegistry},
		{"nil reconciler", func() (*Controller, error) { return NewController("c", e.reg(), nil, cm) }, errNoReconciler},
		{"no watch", func() (*Controller, error) { return NewController("c", e.reg(), rec) }, errNoWatch},
		{"nil object", func() (*Controller, error) { return NewController("c", e.reg(), rec, For(nil)) }, errBadWatch},
		{"no workers", func() (*Controller, error) {
			return NewController("c", e.reg(), rec, cm, WithMaxConcurrentReconciles(0))
		}, errWorkers},
		{"nil clock", func() (*Controller, error) { return NewController("c", e.reg(), rec, cm, WithClock(nil)) }, errNoClock},
		{"nil limiter", func() (*Controller, error) { return NewController("c", e.reg(), rec, cm, WithRateLimiter(nil)) }, errNoLimiter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.give()
			assert.ErrorIs(t, err, tt.want)
			assert.Nil(t, c)
		})
	}
}

// TestControllerAddRemoveCyclesLeaveNothing adds and removes a cluster a
// hundred times under a running Controller: afterwards the server has no
// connection or watch, and the process no more goroutines or file
// descriptors than before (goleak checks the rest once the Controller
// stops, in TestMain).
func TestControllerAddRemoveCyclesLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("100 cycles; not with -short")
	}
	e := newEnv(t)
	s := fakeapi.New()
	defer s.Close()
	s.Apply(configMap("one", "1"))
	rec := newRecorder(e.reg())
	c, err := NewController("test", e.reg(), rec, For(&corev1.ConfigMap{}))
	require.NoError(t, err)
	start(t, c)
	var goroutines, fds int
	for i := range 101 {
		if i == 1 { // after one cycle, so that everything that lives as long as the Controller runs
			goroutines, fds = runtime.NumGoroutine(), openFDs(t)
		}
		e.source.Upsert(clusterregistry.Cluster{Name: "cycling", Config: s.Config()})
		e.sync()
		require.Eventually(t, func() bool { return rec.count(cmReq("cycling", "one")) > i }, wait, time.Millisecond)
		e.source.Delete("cycling")
		e.sync()
		require.Eventually(t, func() bool { return len(c.Engaged()) == 0 }, wait, time.Millisecond)
	}
	assert.Eventually(t, func() bool { return s.Connections() == 0 && s.Watchers() == 0 }, wait, time.Millisecond,
		"server: %d connections, %d watches", s.Connections(), s.Watchers())
	// +1: Eventually runs its condition in a goroutine of its own.
	if !assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+1 }, wait, 10*time.Millisecond) {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines: %d before, %d after:\n%s", goroutines, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
	assert.LessOrEqual(t, openFDs(t), fds, "file descriptors")
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(entries)
}

// A reconcile that failed because its cluster's client was released while
// it ran is tried again, and is no error in the log.
func TestControllerRetriesAReleasedReconcileQuietly(t *testing.T) {
	e := newEnv(t, "a")
	var mu sync.Mutex
	calls := 0
	var errorLogs []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(args, `"error"`) {
			errorLogs = append(errorLogs, args)
		}
	}, funcr.Options{Verbosity: 1})
	c, err := NewController("test", e.reg(), reconcile.TypedFunc[Request](func(ctx context.Context, r Request) (reconcile.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return reconcile.Result{}, fmt.Errorf("read: %w", fmt.Errorf("cluster %q: %w", r.ClusterName, ErrReleased))
		}
		return reconcile.Result{}, nil
	}), For(&corev1.ConfigMap{}), WithLogger(log))
	require.NoError(t, err)
	c.Enqueue(cmReq("a", "x"))
	start(t, c)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return calls == 2 }, wait, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, errorLogs, "no error logged")
}
