package secret_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	kcsource "github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/trust"
)

// TestExecFromSecretsNeverRuns drives a real Syncer with the library's
// ClientBuilder against a TLS server that only an exec plugin's token opens,
// from Secrets of both formats: by default the plugin is refused and never
// runs; allowed, it runs.
func TestExecFromSecretsNeverRuns(t *testing.T) {
	type format struct {
		name   string
		opts   []secret.Option
		secret func(srv *trusttest.Server, marker string) *corev1.Secret
		loc    string
		field  string
	}
	formats := []format{
		{
			name: "kubeconfig",
			secret: func(srv *trusttest.Server, marker string) *corev1.Secret {
				return kubeconfigSecret("hub", "x", map[string]string{"kubeconfig": trusttest.ExecKubeconfig(srv, marker)})
			},
			loc:   "hub/x",
			field: "data[kubeconfig].users[u].exec",
		},
		{
			name: "Argo CD",
			opts: []secret.Option{secret.WithFormat(secret.ArgoCD)},
			secret: func(srv *trusttest.Server, marker string) *corev1.Secret {
				return argoSecret("argocd", "cluster-x", map[string]string{"name": "x", "server": srv.URL, "config": trusttest.ArgoCDConfig(srv, marker)})
			},
			loc:   "argocd/cluster-x",
			field: "data[config].execProviderConfig",
		},
	}
	for _, f := range formats {
		t.Run(f.name+", refused by default", func(t *testing.T) {
			srv := trusttest.NewServer(t)
			marker := trusttest.Marker(t)
			s, err := secret.New(fake.NewClientset(f.secret(srv, marker)), f.opts...)
			require.NoError(t, err)
			reg := trusttest.RunSyncer(t, s)

			_, err = reg.Get("x")
			require.Error(t, err)
			trusttest.RequireRefused(t, reg.Snapshot().Err("x"), f.loc, f.field)
			assert.False(t, trusttest.Exists(t, marker), "the command ran")
			assert.Zero(t, srv.Authorized())
		})
		t.Run(f.name+", run when allowed", func(t *testing.T) {
			srv := trusttest.NewServer(t)
			marker := trusttest.Marker(t)
			s, err := secret.New(fake.NewClientset(f.secret(srv, marker)),
				append(f.opts, secret.WithTrustPolicy(trust.Policy{AllowExec: true}))...)
			require.NoError(t, err)
			reg := trusttest.RunSyncer(t, s)

			c, err := reg.Get("x")
			require.NoError(t, err, "the plugin's token opened the server")
			assert.Equal(t, "v1.37.2", c.ServerVersion().GitVersion)
			assert.True(t, trusttest.Exists(t, marker), "the command did not run: this test could not fail")
		})
	}
}

func TestLocalFilesFromSecretsAreNotOpened(t *testing.T) {
	t.Run("a named pipe", func(t *testing.T) {
		wire := trusttest.NewTripwire(t)
		s := newSource(t)
		c := secret.Cluster(s, kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": trusttest.KeyFileKubeconfig("https://c.example", wire.Path)}))
		trusttest.RequireRefused(t, c.Err, "hub/prod", "data[kubeconfig].users[u].client-key")
		assert.False(t, wire.Stop(), "the source opened the key file")
	})
	t.Run("a missing file", func(t *testing.T) {
		s := newSource(t)
		c := secret.Cluster(s, kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": trusttest.KeyFileKubeconfig("https://c.example", "/nonexistent/client.key")}))
		trusttest.RequireRefused(t, c.Err, "hub/prod", "data[kubeconfig].users[u].client-key")
		assert.NotErrorIs(t, c.Err, fs.ErrNotExist)
	})
	t.Run("a key file", func(t *testing.T) {
		const content = "k3y-s3cr3tvalue"
		keyFile := filepath.Join(t.TempDir(), "client.key")
		require.NoError(t, os.WriteFile(keyFile, []byte(content), 0o600))
		sec := kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": trusttest.KeyFileKubeconfig("https://c.example", keyFile)})

		c := secret.Cluster(newSource(t), sec)
		trusttest.RequireRefused(t, c.Err, "hub/prod", "data[kubeconfig].users[u].client-key")
		assert.Nil(t, c.Config)
		assert.NotContains(t, c.Err.Error(), "k3y")

		// Allowed, the file is read: the checks above could fail.
		c = secret.Cluster(newSource(t, secret.WithTrustPolicy(trust.Policy{AllowLocalFiles: true})), sec)
		require.NoError(t, c.Err)
		assert.Equal(t, content, string(c.Config.KeyData))
	})
}

func TestArgoCDPolicy(t *testing.T) {
	const loc = "argocd/cluster-1"
	give := map[string]string{"name": "prod", "server": "https://x", "config": `{"tlsClientConfig": {"insecure": true}, "proxyUrl": "http://proxy:3128"}`}
	c := secret.Cluster(newSource(t, secret.WithFormat(secret.ArgoCD)), argoSecret("argocd", "cluster-1", give))
	assert.Equal(t, got{Name: "prod", Host: "https://x"}, summarize(t, c), "trust.Untrusted accepts insecure and proxies")

	c = secret.Cluster(newSource(t, secret.WithFormat(secret.ArgoCD), secret.WithTrustPolicy(trust.Policy{})), argoSecret("argocd", "cluster-1", give))
	assert.Equal(t, got{Name: "prod", Err: loc + "|data[config].tlsClientConfig.insecure"}, summarize(t, c))
	assert.ErrorIs(t, c.Err, trust.ErrRefused)
	assert.ErrorContains(t, c.Err, "so are config.proxy")
}

func TestSecretNames(t *testing.T) {
	const loc = "argocd/cluster-1"
	give := map[string]string{"name": "arn:aws:eks:us-east-1:1:cluster/prod", "server": "https://x"}
	c := secret.Cluster(newSource(t, secret.WithFormat(secret.ArgoCD)), argoSecret("argocd", "cluster-1", give))
	assert.Equal(t, got{Name: give["name"], Err: loc + "|data[name]"}, summarize(t, c))
	assert.ErrorContains(t, c.Err, "WithRename")

	s := newSource(t, secret.WithFormat(secret.ArgoCD), secret.WithRename(kcsource.SanitizeName),
		secret.WithDefault("arn:aws:eks:us-east-1:1:cluster-prod"))
	c = secret.Cluster(s, argoSecret("argocd", "cluster-1", give))
	assert.Equal(t, got{Name: "arn:aws:eks:us-east-1:1:cluster-prod", Host: "https://x"}, summarize(t, c))
	assert.True(t, c.Default, "WithDefault takes the new name")

	s = newSource(t, secret.WithRename(func(n string) string { return "hub/" + n }))
	c = secret.Cluster(s, kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")}))
	assert.Equal(t, got{Name: "hub/prod", Err: "hub/prod|metadata.name"}, summarize(t, c))
}

func TestSecretLimits(t *testing.T) {
	t.Run("a kubeconfig too big", func(t *testing.T) {
		kc := kubeconfig("a", "a")
		s := newSource(t, secret.WithMaxSize(int64(len(kc)-1)))
		c := secret.Cluster(s, kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": kc}))
		assert.Equal(t, got{Name: "prod", Err: "hub/prod|data[kubeconfig]"}, summarize(t, c))
		assert.ErrorContains(t, c.Err, "WithMaxSize")
		s = newSource(t, secret.WithMaxSize(int64(len(kc))))
		assert.NoError(t, secret.Cluster(s, kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": kc})).Err)
	})
	t.Run("an Argo CD Secret too big", func(t *testing.T) {
		s := newSource(t, secret.WithFormat(secret.ArgoCD), secret.WithMaxSize(100))
		c := secret.Cluster(s, argoSecret("argocd", "cluster-1", map[string]string{"name": "prod", "server": "https://x",
			"config": `{"bearerToken": "` + strings.Repeat("x", 100) + `"}`}))
		assert.Equal(t, got{Name: "prod", Err: "argocd/cluster-1|data"}, summarize(t, c))
	})
	t.Run("too many Secrets, from the cache of a Watch", func(t *testing.T) {
		var objs []runtime.Object
		for i := range 3 {
			objs = append(objs, kubeconfigSecret("hub", fmt.Sprintf("c%d", i), map[string]string{"kubeconfig": kubeconfig("a", "a")}))
		}
		s, err := secret.New(fake.NewClientset(objs...), secret.WithMaxClusters(2))
		require.NoError(t, err)
		startWatch(t, s)
		_, err = s.List(context.Background())
		assert.ErrorContains(t, err, "more than the limit of 2 clusters (WithMaxClusters)")
	})
	t.Run("too many Secrets: the API server is asked no further", func(t *testing.T) {
		client := fake.NewClientset()
		calls := 0
		// One Secret per page, and always another page.
		client.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			calls++
			assert.EqualValues(t, 500, a.(k8stesting.ListActionImpl).GetListOptions().Limit)
			sec := kubeconfigSecret("hub", fmt.Sprintf("c%d", calls), map[string]string{"kubeconfig": kubeconfig("a", "a")})
			return true, &corev1.SecretList{ListMeta: metav1.ListMeta{Continue: "more"}, Items: []corev1.Secret{*sec}}, nil
		})
		s, err := secret.New(client, secret.WithMaxClusters(3))
		require.NoError(t, err)
		_, err = s.List(context.Background())
		assert.ErrorContains(t, err, "more than the limit of 3 clusters")
		assert.Equal(t, 4, calls)
	})
	t.Run("pages are joined", func(t *testing.T) {
		client := fake.NewClientset()
		client.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			next := map[string]string{"": "1", "1": "2", "2": ""}
			cont := a.(k8stesting.ListActionImpl).GetListOptions().Continue
			sec := kubeconfigSecret("hub", "c"+cont, map[string]string{"kubeconfig": kubeconfig("a", "a")})
			return true, &corev1.SecretList{ListMeta: metav1.ListMeta{Continue: next[cont]}, Items: []corev1.Secret{*sec}}, nil
		})
		s, err := secret.New(client)
		require.NoError(t, err)
		clusters, err := s.List(context.Background())
		require.NoError(t, err)
		assert.Len(t, clusters, 3)
	})
	t.Run("invalid limits", func(t *testing.T) {
		_, err := secret.New(fake.NewClientset(), secret.WithMaxSize(0), secret.WithMaxClusters(0))
		assert.ErrorContains(t, err, "max size must be at least 1")
		assert.ErrorContains(t, err, "max clusters must be at least 1")
	})
}
