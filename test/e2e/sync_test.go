package e2e

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// kubeconfigSource lists one Cluster per context of a kubeconfig file, the
// first context being the default. It stands in for the kubeconfig source
// the library does not have yet.
func kubeconfigSource(path string) clusterregistry.SourceFunc {
	return func(context.Context) ([]clusterregistry.Cluster, error) {
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			return nil, err
		}
		var out []clusterregistry.Cluster
		for _, name := range slices.Sorted(maps.Keys(cfg.Contexts)) {
			c := clusterregistry.Cluster{Name: name, Default: name == cfg.CurrentContext}
			c.Config, c.Err = clientcmd.NewNonInteractiveClientConfig(*cfg, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
			out = append(out, c)
		}
		return out, nil
	}
}

// Five real clusters through a Syncer running its own loop: every cluster
// is reachable, reports the pinned version, and is a cluster of its own.
func TestSyncFiveClustersFromKubeconfig(t *testing.T) {
	env := localcluster.StartT(t, 5)

	source := kubeconfigSource(env.KubeconfigPath())
	listed, err := source.List(t.Context())
	require.NoError(t, err)
	require.Len(t, listed, 5)
	for _, c := range listed {
		require.NoError(t, c.Err, c.Name)
		assert.Empty(t, c.Config.CAFile, "%s: CA must be inline", c.Name)
		assert.NotEmpty(t, c.Config.CAData, c.Name)
	}

	s, err := clusterregistry.NewSyncer(source, fast, clusterregistry.WithLogger(testr.New(t)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	require.NoError(t, s.WaitForFirstSync(syncCtx(t)))

	reg := s.Registry()
	names := make([]string, 0, 5)
	for _, c := range env.Clusters() {
		names = append(names, c.Name())
	}
	assert.Equal(t, names, reg.Snapshot().Names())

	for _, name := range names {
		require.NoError(t, reg.Snapshot().Err(name), name)
		client, err := reg.Get(name)
		require.NoError(t, err, name)
		assert.Equal(t, "v1.37.2", client.ServerVersion().GitVersion, name)
		live, err := client.Discovery().ServerVersion()
		require.NoError(t, err, name)
		assert.Equal(t, "v1.37.2", live.GitVersion, name)

		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + name}}
		_, err = client.Kubernetes().CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
		require.NoError(t, err, name)
	}
	// Each cluster lists its own namespace and none of the others': the
	// clusters are independent, and each client reaches its own.
	for _, name := range names {
		client, err := reg.Get(name)
		require.NoError(t, err)
		list, err := client.Kubernetes().CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
		require.NoError(t, err, name)
		var mine []string
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, "e2e-") {
				mine = append(mine, ns.Name)
			}
		}
		assert.Equal(t, []string{"e2e-" + name}, mine, name)
	}

	def, err := reg.Default()
	require.NoError(t, err)
	assert.Equal(t, "cluster-1", def.Name())

	cancel()
	require.NoError(t, <-runErr)
	_, err = reg.Get("cluster-1")
	assert.True(t, errors.Is(err, clusterregistry.ErrStopped), "after Run returns the Registry says so: %v", err)
}
