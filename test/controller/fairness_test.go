package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clusterregistry/clusterregistry"
	mcr "github.com/clusterregistry/clusterregistry/controllerruntime"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// The workload: the flooded cluster holds this many ConfigMaps, all queued
// at once when the controller starts (its informer's initial list); each
// quiet cluster then gets quietChanges new ConfigMaps, one every quietGap.
const (
	floodObjects = 1000
	quietChanges = 10
	quietGap     = 20 * time.Millisecond
)

type latencies struct{ p50, p99, max time.Duration }

// TestFairnessOnRealClusters floods one real cluster while two others get a
// few changes, and measures the quiet clusters' request latency (change to
// reconcile) with the fair queue and with one shared FIFO, in the same run
// over the same clusters. It logs the figures and asserts only a generous
// bound.
func TestFairnessOnRealClusters(t *testing.T) {
	env := localcluster.StartT(t, 3)
	c := env.Clusters()
	ctx := context.Background()
	flooded := admin(t, c[0])
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < floodObjects; i += 8 {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprint("flood-", i)}}
				_, err := flooded.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	source := clusterregistry.NewMemorySource()
	for _, cl := range c {
		source.Upsert(clusterregistry.Cluster{Name: cl.Name(), Config: cl.Config()})
	}
	syncer, err := clusterregistry.NewSyncer(source, mcr.Builder{}, clusterregistry.WithInterval(time.Hour))
	require.NoError(t, err)
	defer func() { require.NoError(t, syncer.Close()) }()
	_, err = syncer.Sync(ctx)
	require.NoError(t, err)

	quiet := map[string]kubernetes.Interface{c[1].Name(): admin(t, c[1]), c[2].Name(): admin(t, c[2])}
	fair := measureOnRealClusters(t, syncer.Registry(), quiet, "fair", false)
	fifo := measureOnRealClusters(t, syncer.Registry(), quiet, "fifo", true)
	t.Logf("quiet clusters' request latency with %d requests of a flooded cluster queued (2 workers, %d quiet requests):",
		floodObjects, quietChanges*len(quiet))
	t.Logf("  fair queue:  p50 %v  p99 %v  max %v", fair.p50, fair.p99, fair.max)
	t.Logf("  shared FIFO: p50 %v  p99 %v  max %v", fifo.p50, fifo.p99, fifo.max)
	assert.Less(t, fair.p99, 30*time.Second, "a generous bound")
}

// measureOnRealClusters runs a controller over every cluster of reg until
// each quiet cluster's new ConfigMaps (named run-*) have been reconciled.
// Each reconcile reads its object from its API server, uncached: the cost
// of a real reconcile's round trip.
func measureOnRealClusters(t *testing.T, reg *clusterregistry.Registry[*mcr.Cluster], quiet map[string]kubernetes.Interface, run string, fifo bool) latencies {
	var mu sync.Mutex
	changed := map[mcr.Request]time.Time{}
	var got []time.Duration
	rec := mcr.ReconcileFunc(func(ctx context.Context, r mcr.Request) (ctrl.Result, error) {
		now := time.Now()
		mu.Lock()
		if t0, ok := changed[r]; ok {
			got = append(got, now.Sub(t0))
			delete(changed, r)
		}
		mu.Unlock()
		cl, err := reg.Get(r.ClusterName)
		if err != nil {
			return ctrl.Result{}, err
		}
		var cm corev1.ConfigMap
		return ctrl.Result{}, client.IgnoreNotFound(cl.GetAPIReader().Get(ctx, r.NamespacedName, &cm))
	})
	opts := []mcr.Option{mcr.For(&corev1.ConfigMap{}), mcr.WithMaxConcurrentReconciles(2)}
	if fifo {
		opts = append(opts, mcr.WithSharedFIFO())
	}
	controller, err := mcr.NewController("fairness-"+run, reg, rec, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controller.Start(ctx) }() // joined below
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.Eventually(t, func() bool { return len(controller.Engaged()) == 3 }, convergeBound, 10*time.Millisecond)

	names := slices.Sorted(func(yield func(string) bool) {
		for n := range quiet {
			if !yield(n) {
				return
			}
		}
	})
	for i := range quietChanges {
		for _, n := range names {
			r := mcr.Request{ClusterName: n}
			r.NamespacedName = client.ObjectKey{Namespace: "default", Name: fmt.Sprintf("%s-%d", run, i)}
			mu.Lock()
			changed[r] = time.Now()
			mu.Unlock()
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: r.Name}}
			_, err := quiet[n].CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		time.Sleep(quietGap) // the quiet clusters' pace: the workload, not a wait for a result
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(changed) == 0 }, convergeBound, 10*time.Millisecond,
		"%s: quiet requests reconciled", strings.ToUpper(run))
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	return latencies{p50: got[len(got)/2], p99: got[len(got)*99/100], max: got[len(got)-1]}
}
