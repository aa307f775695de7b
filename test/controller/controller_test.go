package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/clusterregistry/clusterregistry"
	mcr "github.com/clusterregistry/clusterregistry/controllerruntime"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// convergeBound is the stated bound on convergence after each change: every
// serving cluster holds the hub's data within it. Measured figures are far
// below (logged by the test); the bound is generous for a busy 2-core
// machine.
const convergeBound = 60 * time.Second

var key = client.ObjectKey{Namespace: "default", Name: "fleet-config"}

func admin(t *testing.T, c *localcluster.Cluster) kubernetes.Interface {
	t.Helper()
	cfg := c.AdminConfig()
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	return cs
}

// copier is the controller under test: it copies the hub's ConfigMap to
// each cluster, and records what a reconcile found wrong.
type copier struct {
	reg     *clusterregistry.Registry[*mcr.Cluster]
	hub     client.Reader
	hubName string // the member that is the hub: its ConfigMap is the source, never a copy

	mu         sync.Mutex // protects notFound, reconciled and log
	notFound   []string
	reconciled map[string]int // cluster → reconciles that wrote or found its copy
	log        []string       // what each reconcile did, for a failure's report
}

func (c *copier) note(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (c *copier) Reconcile(ctx context.Context, req mcr.Request) (ctrl.Result, error) {
	if req.ClusterName == c.hubName {
		// Copying the hub's object onto itself, through a cache that may
		// lag the hub's, could write an older value back.
		return ctrl.Result{}, nil
	}
	cl, err := c.reg.Get(req.ClusterName)
	if err != nil {
		if errors.Is(err, clusterregistry.ErrClusterNotFound) {
			c.mu.Lock()
			c.notFound = append(c.notFound, req.ClusterName)
			c.mu.Unlock()
		}
		return ctrl.Result{}, err
	}
	var src corev1.ConfigMap
	if err := c.hub.Get(ctx, req.NamespacedName, &src); err != nil {
		c.note("%s: hub: %v", req, err)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	dst := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: src.Namespace, Name: src.Name}}
	op, err := controllerutil.CreateOrUpdate(ctx, cl.GetClient(), dst, func() error {
		dst.Data = src.Data
		return nil
	})
	c.note("%s: %v %v (hub %v)", req, op, err, src.Data)
	if err == nil {
		c.mu.Lock()
		c.reconciled[req.ClusterName]++
		c.mu.Unlock()
	}
	return ctrl.Result{}, err
}

// TestControllerFollowsTheFleet runs the controller over three real
// clusters, then adds a fourth, rotates one's token, black-holes one and
// removes it; after each step every serving cluster converges within
// convergeBound, and the black-holed cluster delays no other.
func TestControllerFollowsTheFleet(t *testing.T) {
	env := localcluster.StartT(t, 4)
	c := env.Clusters()
	admins := map[string]kubernetes.Interface{}
	for _, cl := range c {
		admins[cl.Name()] = admin(t, cl)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The hub is a cluster.Cluster of its own on cluster-1's admin config.
	hub, err := mcr.Builder{}.Build(ctx, clusterregistry.Cluster{Name: "hub", Config: c[0].AdminConfig()})
	require.NoError(t, err)
	defer mcr.Builder{}.Release(hub)

	source := clusterregistry.NewMemorySource()
	for _, cl := range c[:3] {
		source.Upsert(clusterregistry.Cluster{Name: cl.Name(), Config: cl.Config()})
	}
	syncer, err := clusterregistry.NewSyncer(source, mcr.Builder{},
		clusterregistry.WithBuildTimeout(10*time.Second), clusterregistry.WithInterval(time.Hour))
	require.NoError(t, err)
	reg := syncer.Registry()
	rec := &copier{reg: reg, hub: hub.GetClient(), hubName: c[0].Name(), reconciled: map[string]int{}}
	only := predicate.NewPredicateFuncs(func(o client.Object) bool { return client.ObjectKeyFromObject(o) == key })
	controller, err := mcr.NewController("copier", reg, rec,
		mcr.For(&corev1.ConfigMap{}, only), mcr.Broadcasts(hub.GetCache(), &corev1.ConfigMap{}, only),
		mcr.WithReconcileTimeout(20*time.Second))
	require.NoError(t, err)

	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	wg.Go(func() { assert.NoError(t, syncer.Run(runCtx)) })
	wg.Go(func() { assert.NoError(t, controller.Start(runCtx)) })
	defer func() {
		stop()
		wg.Wait()
	}()
	require.NoError(t, syncer.WaitForFirstSync(ctx))

	setHub := func(v string) {
		t.Helper()
		cms := admins[c[0].Name()].CoreV1().ConfigMaps(key.Namespace)
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cm, err := cms.Get(ctx, key.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string]string{"v": v}}
				_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
				return err
			} else if err != nil {
				return err
			}
			cm.Data = map[string]string{"v": v}
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		}))
	}
	converge := func(step, v string, clusters ...*localcluster.Cluster) {
		t.Helper()
		start := time.Now()
		for _, cl := range clusters {
			if !assert.Eventually(t, func() bool {
				got, err := admins[cl.Name()].CoreV1().ConfigMaps(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
				return err == nil && got.Data["v"] == v
			}, convergeBound, 20*time.Millisecond, "%s: %s holds %q", step, cl.Name(), v) {
				rec.mu.Lock()
				for _, l := range rec.log[max(0, len(rec.log)-40):] {
					t.Log(l)
				}
				rec.mu.Unlock()
				t.FailNow()
			}
		}
		t.Logf("%s: %d clusters converged in %v", step, len(clusters), time.Since(start).Round(time.Millisecond))
	}
	// The MemorySource tells the running Syncer of each change; these wait
	// for the Registry to show it.
	served := func(name string) func() bool {
		return func() bool { _, err := reg.Get(name); return err == nil }
	}

	setHub("v1")
	converge("three clusters", "v1", c[0], c[1], c[2])

	source.Upsert(clusterregistry.Cluster{Name: c[3].Name(), Config: c[3].Config()})
	require.Eventually(t, served(c[3].Name()), convergeBound, 20*time.Millisecond)
	converge("a fourth added", "v1", c[3])

	// Rotate cluster-2's token: a new client, then the old token revoked,
	// so only the new client can converge it.
	old := c[1].Token()
	tok, err := c[1].IssueToken(ctx)
	require.NoError(t, err)
	require.NoError(t, c[1].UseToken(tok))
	before, err := reg.Get(c[1].Name())
	require.NoError(t, err)
	source.Upsert(clusterregistry.Cluster{Name: c[1].Name(), Config: c[1].Config()})
	require.Eventually(t, func() bool { now, err := reg.Get(c[1].Name()); return err == nil && now != before },
		convergeBound, 20*time.Millisecond, "the client is replaced")
	require.NoError(t, c[1].RevokeToken(ctx, old))
	setHub("v2")
	converge("token rotated", "v2", c...)

	// Black-hole cluster-3: the others converge as before.
	c[2].BlackHole()
	setHub("v3")
	converge("one black-holed (the others)", "v3", c[0], c[1], c[3])

	// Remove the black-holed cluster: its watches go, the others go on.
	source.Delete(c[2].Name())
	require.Eventually(t, func() bool { return !served(c[2].Name())() }, convergeBound, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(controller.Engaged()) == 3 }, convergeBound, 20*time.Millisecond)
	assert.Equal(t, []string{c[0].Name(), c[1].Name(), c[3].Name()}, controller.Engaged())
	setHub("v4")
	converge("black-holed one removed", "v4", c[0], c[1], c[3])
	require.NoError(t, c[2].Heal())

	rec.mu.Lock()
	assert.Empty(t, rec.notFound, "no reconcile found a serving cluster missing")
	rec.mu.Unlock()

	t.Run("100 add-remove cycles leave nothing", func(t *testing.T) {
		addRemoveCycles(t, source, reg, controller, rec, c[3], admins[c[3].Name()])
	})
}

// addRemoveCycles adds a cluster (cl, through a proxy of its own) to the
// running controller's source and removes it again, a hundred times: each
// time it is engaged and reconciled, then disengaged. Afterwards nothing of
// it may be left: no connection through its proxy, no watch on its API
// server beyond the baseline, and no more goroutines or file descriptors in
// this process than after the first cycle. (goleak checks the rest once the
// controller stops, in TestMain.)
func addRemoveCycles(t *testing.T, source *clusterregistry.MemorySource, reg *clusterregistry.Registry[*mcr.Cluster],
	controller *mcr.Controller, rec *copier, cl *localcluster.Cluster, admin kubernetes.Interface) {
	const cycles = 100
	proxy, err := localcluster.NewProxy(cl.APIServerAddr())
	require.NoError(t, err)
	defer func() { assert.NoError(t, proxy.Close()) }()
	cfg := rest.CopyConfig(cl.Config())
	cfg.Host = "https://" + proxy.Addr()
	const name = "cycling"
	engaged := func() bool { return slices.Contains(controller.Engaged(), name) }

	baseWatches := configMapWatches(t, admin)
	var goroutines, fds int
	var adds, removes []time.Duration // each cycle's: added to reconciled, removed to disengaged
	start := time.Now()
	for i := range cycles + 1 {
		if i == 1 { // after one cycle: what lives as long as the controller has started
			goroutines, fds = runtime.NumGoroutine(), countFDs(t)
		}
		t0 := time.Now()
		source.Upsert(clusterregistry.Cluster{Name: name, Config: cfg})
		require.Eventually(t, func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return engaged() && rec.reconciled[name] > i
		}, convergeBound, 5*time.Millisecond, "cycle %d: %s engaged and reconciled", i, name)
		t1 := time.Now()
		source.Delete(name)
		require.Eventually(t, func() bool { _, err := reg.Get(name); return err != nil && !engaged() },
			convergeBound, 5*time.Millisecond, "cycle %d: %s removed and disengaged", i, name)
		adds, removes = append(adds, t1.Sub(t0)), append(removes, time.Since(t1))
	}
	slices.Sort(adds)
	slices.Sort(removes)
	t.Logf("%d add-remove cycles in %v: added to reconciled p50 %v max %v; removed to disengaged p50 %v max %v",
		cycles+1, time.Since(start).Round(time.Millisecond), adds[len(adds)/2].Round(time.Millisecond),
		adds[len(adds)-1].Round(time.Millisecond), removes[len(removes)/2].Round(time.Millisecond),
		removes[len(removes)-1].Round(time.Millisecond))

	assert.Eventually(t, func() bool { return proxy.Connections() == 0 }, convergeBound, 10*time.Millisecond,
		"connections through the removed cluster's proxy: %d sockets", proxy.Connections())
	assert.Eventually(t, func() bool { return configMapWatches(t, admin) <= baseWatches }, convergeBound, 100*time.Millisecond,
		"watches of ConfigMaps on %s: %d before, %d after", cl.Name(), baseWatches, configMapWatches(t, admin))
	// +1: Eventually runs its condition in a goroutine of its own.
	if !assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+1 }, convergeBound, 10*time.Millisecond,
		"goroutines: %d after the first cycle, %d now", goroutines, runtime.NumGoroutine()) {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	assert.LessOrEqual(t, countFDs(t), fds, "file descriptors")
	t.Logf("after the cycles: %d goroutines (%d after the first), %d file descriptors (%d), %d ConfigMap watches on %s (%d before)",
		runtime.NumGoroutine(), goroutines, countFDs(t), fds, configMapWatches(t, admin), cl.Name(), baseWatches)
}

// configMapWatches returns how many watches of ConfigMaps the API server of
// admin serves, of any scope.
func configMapWatches(t *testing.T, admin kubernetes.Interface) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n, err := localcluster.Watches(ctx, admin, "", "configmaps")
	require.NoError(t, err)
	return n
}

// countFDs counts this process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}
