package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	// The servers are built (or found) before the tests start, outside the
	// test timeout; -short skips the tests that need them.
	os.Exit(localcluster.RunTests(m, func() bool { return !testing.Short() }, clusterregistrytest.LeakOptions()...))
}

// TestControllerOnLocalClusters runs the controller as `go run ./controller
// -kubeconfig` does, against real local clusters: the hub's ConfigMap
// reaches the other cluster and follows its changes; a pod watcher starts
// per cluster and reports a new pod; the manager stops everything on cancel.
func TestControllerOnLocalClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs local Kubernetes clusters; not with -short")
	}
	env := localcluster.StartT(t, 2)
	var sink logSink
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, env.KubeconfigPath(), newLogger(&sink)) }() // joined below
	defer func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Fatal("the manager did not stop")
		}
	}()

	for _, c := range env.Clusters() {
		require.Eventually(t, func() bool {
			return sink.has(`"msg"="Watching pods" "cluster"="` + c.Name() + `"`)
		}, time.Minute, 10*time.Millisecond, "a watcher for %s", c.Name())
	}

	cfg := env.Cluster("cluster-2").AdminConfig()
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	defer utilnet.CloseIdleConnectionsFor(hc.Transport)
	admin, err := kubernetes.NewForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	_, err = admin.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return sink.has(`"msg"="Pod added" "cluster"="cluster-2" "pod"="default/probe"`)
	}, time.Minute, 10*time.Millisecond)

	// The hub is the kubeconfig's current context, cluster-1.
	hub := adminClient(t, env.Cluster("cluster-1"))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: configMap.Namespace, Name: configMap.Name},
		Data: map[string]string{"colour": "blue"}}
	_, err = hub.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	require.NoError(t, err)
	copyHas := func(colour string) func() bool {
		return func() bool {
			got, err := admin.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
			return err == nil && got.Data["colour"] == colour
		}
	}
	require.Eventually(t, copyHas("blue"), time.Minute, 10*time.Millisecond, "the hub's ConfigMap is copied")
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := hub.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		latest.Data["colour"] = "green"
		_, err = hub.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, latest, metav1.UpdateOptions{})
		return err
	}))
	require.Eventually(t, copyHas("green"), time.Minute, 10*time.Millisecond, "a change of the hub's follows")

	// A change of the copy is undone.
	drifted, err := admin.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
	require.NoError(t, err)
	drifted.Data["colour"] = "red"
	_, err = admin.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, drifted, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, copyHas("green"), time.Minute, 10*time.Millisecond, "the copy is restored")
}

func adminClient(t *testing.T, c *localcluster.Cluster) kubernetes.Interface {
	t.Helper()
	cfg := c.AdminConfig()
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	return cs
}
