package localcluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	_, err := localcluster.EnsureBinaries(ctx, os.Stderr)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the local Kubernetes servers could not be built: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := localcluster.StopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping the local clusters: %v\n", err)
		code = 1
	}
	if kids := children(); len(kids) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left behind: %v\n", kids)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(leakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func leakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1")}
}

// children returns the command names of this process's child processes.
func children() []string {
	var out []string
	dirs, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me {
			out = append(out, s[:i+1])
		}
	}
	return out
}

func clientFor(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return cs
}

func getNamespace(cs kubernetes.Interface) error {
	_, err := cs.CoreV1().Namespaces().Get(context.Background(), localcluster.Namespace, metav1.GetOptions{})
	return err
}

func TestEnvironment(t *testing.T) {
	env := localcluster.StartT(t, 2)
	c1, c2 := env.Cluster("cluster-1"), env.Cluster("cluster-2")
	require.NotNil(t, c1)
	require.NotNil(t, c2)

	t.Run("kubeconfig", func(t *testing.T) {
		cfg, err := clientcmd.LoadFromFile(env.KubeconfigPath())
		require.NoError(t, err)
		assert.Equal(t, "cluster-1", cfg.CurrentContext)
		assert.Len(t, cfg.Contexts, 2)
		for _, c := range env.Clusters() {
			cl := cfg.Clusters[c.Name()]
			require.NotNil(t, cl, c.Name())
			assert.Empty(t, cl.CertificateAuthority, "no CA file path")
			assert.Equal(t, c.CAData(), cl.CertificateAuthorityData)
			assert.Equal(t, c.Server(), cl.Server)
			assert.Equal(t, c.Token(), cfg.AuthInfos[c.Name()].Token)

			rc, err := clientcmd.NewNonInteractiveClientConfig(*cfg, c.Name(), &clientcmd.ConfigOverrides{}, nil).ClientConfig()
			require.NoError(t, err)
			v, err := clientFor(t, rc).Discovery().ServerVersion()
			require.NoError(t, err)
			assert.Equal(t, "v1.37.2", v.GitVersion)

			own, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
			require.NoError(t, err)
			assert.Equal(t, c.Server(), own.Host)
		}
	})

	t.Run("independent clusters", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-in-1"}}
		_, err := clientFor(t, c1.Config()).CoreV1().ConfigMaps(localcluster.Namespace).Create(t.Context(), cm, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = clientFor(t, c2.Config()).CoreV1().ConfigMaps(localcluster.Namespace).Get(t.Context(), "only-in-1", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "want not found in cluster-2, got %v", err)
	})

	t.Run("stop and start", func(t *testing.T) {
		require.NoError(t, c1.Stop())
		assert.False(t, c1.Running())
		for _, addr := range []string{c1.APIServerAddr(), strings.TrimPrefix(c1.Server(), "https://")} {
			_, err := net.Dial("tcp", addr)
			assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "%s: want connection refused, got %v", addr, err)
		}
		assert.Error(t, getNamespace(clientFor(t, c1.Config())))
		assert.NoError(t, getNamespace(clientFor(t, c2.Config())), "the other cluster is unaffected")

		start := time.Now()
		require.NoError(t, c1.Start(t.Context()))
		t.Logf("restarted in %s", time.Since(start).Round(time.Millisecond))
		assert.True(t, c1.Running())
		cs := clientFor(t, c1.Config())
		require.NoError(t, getNamespace(cs), "the token issued before the restart is still valid")
		_, err := cs.CoreV1().ConfigMaps(localcluster.Namespace).Get(t.Context(), "only-in-1", metav1.GetOptions{})
		assert.NoError(t, err, "the data survives the restart")
	})

	t.Run("black hole", func(t *testing.T) {
		c1.BlackHole()
		cfg := c1.Config()
		cfg.Timeout = time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		start := time.Now()
		err = getNamespace(cs)
		require.Error(t, err)
		assert.GreaterOrEqual(t, time.Since(start), time.Second, "the request hangs until its timeout: %v", err)
		assert.NoError(t, getNamespace(clientFor(t, c1.AdminConfig())), "the admin config bypasses the proxy")
		require.NoError(t, c1.Heal())
		assert.NoError(t, getNamespace(clientFor(t, c1.Config())))
	})

	t.Run("tokens", func(t *testing.T) {
		extra, err := c2.IssueToken(t.Context())
		require.NoError(t, err)
		extraClient := clientFor(t, c2.ConfigForToken(extra))
		require.NoError(t, getNamespace(extraClient))

		start := time.Now()
		require.NoError(t, c2.RevokeToken(t.Context(), extra))
		t.Logf("revoked in %s", time.Since(start).Round(time.Millisecond))
		err = getNamespace(extraClient)
		assert.True(t, apierrors.IsUnauthorized(err), "the revoked token gets 401, got %v", err)
		assert.NoError(t, getNamespace(clientFor(t, c2.Config())), "the current token stays valid")

		old := c2.Token()
		oldClient := clientFor(t, c2.ConfigForToken(old))
		require.NoError(t, getNamespace(oldClient))
		rotated, err := c2.RotateToken(t.Context())
		require.NoError(t, err)
		assert.Equal(t, rotated, c2.Token())
		err = getNamespace(oldClient)
		assert.True(t, apierrors.IsUnauthorized(err), "the rotated-out token gets 401, got %v", err)
		fromFile, err := clientcmd.BuildConfigFromFlags("", c2.KubeconfigPath())
		require.NoError(t, err)
		assert.Equal(t, rotated, fromFile.BearerToken, "the kubeconfig file carries the new token")
		assert.NoError(t, getNamespace(clientFor(t, fromFile)))
	})

	t.Run("stop leaves nothing", func(t *testing.T) {
		dir := env.Dir()
		require.NoError(t, env.Stop())
		assert.Empty(t, children())
		_, err := os.Stat(dir)
		assert.True(t, os.IsNotExist(err), "the temporary directory is removed")
		assert.Error(t, c1.Start(t.Context()), "a stopped environment does not start again")
	})
}
