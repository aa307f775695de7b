package secret_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/trust"
)

// resolved returns how many Secrets s has resolved (decoded a kubeconfig,
// or read an Argo CD config) so far.
func resolved(s *secret.Source) int64 {
	_, misses := secret.MemoOf(s).Stats()
	return misses
}

func listOf(t *testing.T, s *secret.Source) []clusterregistry.Cluster {
	t.Helper()
	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	return clusters
}

func hosts(clusters []clusterregistry.Cluster) map[string]string {
	m := map[string]string{}
	for _, c := range clusters {
		if c.Config != nil {
			m[c.Name] = c.Config.Host
		}
	}
	return m
}

// formatCase makes the Secrets of one format, so that each test runs for
// both.
type formatCase struct {
	format secret.Format
	// make returns a Secret for cluster name at https://NAME-SUFFIX.example.
	make func(name, suffix string) *corev1.Secret
}

var formatCases = []formatCase{
	{secret.Kubeconfig, func(name, suffix string) *corev1.Secret {
		return kubeconfigSecret("hub", name, map[string]string{"kubeconfig": fmt.Sprintf(`
current-context: x
clusters: [{name: c, cluster: {server: "https://%s-%s.example", certificate-authority-data: Y2EtZGF0YQ==}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`, name, suffix)})
	}},
	{secret.ArgoCD, func(name, suffix string) *corev1.Secret {
		return argoSecret("hub", name, map[string]string{"name": name, "server": "https://" + name + "-" + suffix + ".example",
			"config": `{"bearerToken": "tok-s3cr3t", "tlsClientConfig": {"caData": "Y2EtZGF0YQ=="}}`})
	}},
}

func TestListResolvesOnlyWhatChanged(t *testing.T) {
	for _, fc := range formatCases {
		for _, watch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/watch=%t", fc.format, watch), func(t *testing.T) {
				ctx := context.Background()
				var objs []runtime.Object
				for i := range 5 {
					objs = append(objs, fc.make(fmt.Sprintf("c%d", i), "1"))
				}
				client := fake.NewClientset(objs...)
				s, err := secret.New(client, secret.WithFormat(fc.format))
				require.NoError(t, err)
				var r *running
				if watch {
					r = startWatch(t, s)
				}
				require.Len(t, listOf(t, s), 5)
				require.EqualValues(t, 5, resolved(s))
				listOf(t, s)
				assert.EqualValues(t, 5, resolved(s), "nothing changed, nothing resolved")

				_, err = client.CoreV1().Secrets("hub").Update(ctx, fc.make("c2", "2"), metav1.UpdateOptions{})
				require.NoError(t, err)
				if watch {
					require.Eventually(t, func() bool { return r.changes.Load() > 1 }, 5*time.Second, time.Millisecond)
				}
				got := hosts(listOf(t, s))
				assert.EqualValues(t, 6, resolved(s), "one Secret changed, one resolved")
				assert.Equal(t, "https://c2-2.example", got["c2"], "the change is picked up")
				assert.Equal(t, "https://c3-1.example", got["c3"])
				assert.Equal(t, 5, secret.MemoOf(s).Len())

				require.NoError(t, client.CoreV1().Secrets("hub").Delete(ctx, "c0", metav1.DeleteOptions{}))
				require.NoError(t, client.CoreV1().Secrets("hub").Delete(ctx, "c1", metav1.DeleteOptions{}))
				if watch {
					require.Eventually(t, func() bool { return len(listOf(t, s)) == 3 }, 5*time.Second, time.Millisecond)
				}
				assert.Len(t, listOf(t, s), 3)
				assert.Equal(t, 3, secret.MemoOf(s).Len(), "the memo holds what the listing holds")
				assert.EqualValues(t, 6, resolved(s))
			})
		}
	}
}

// TestArgoCDMemoKeysOnServerAndConfig: a change of either is picked up; a
// change of the name alone resolves nothing.
func TestArgoCDMemoKeysOnServerAndConfig(t *testing.T) {
	ctx := context.Background()
	sec := argoSecret("argocd", "c1", map[string]string{"name": "prod", "server": "https://a.example", "config": `{"bearerToken": "tok-one"}`})
	client := fake.NewClientset(sec)
	s, err := secret.New(client, secret.WithFormat(secret.ArgoCD))
	require.NoError(t, err)
	update := func(key, value string) clusterregistry.Cluster {
		t.Helper()
		sec.Data[key] = []byte(value)
		_, err := client.CoreV1().Secrets("argocd").Update(ctx, sec, metav1.UpdateOptions{})
		require.NoError(t, err)
		clusters := listOf(t, s)
		require.Len(t, clusters, 1)
		require.NoError(t, clusters[0].Err)
		return clusters[0]
	}
	require.Equal(t, "tok-one", listOf(t, s)[0].Config.BearerToken)
	assert.Equal(t, "tok-two", update("config", `{"bearerToken": "tok-two"}`).Config.BearerToken)
	assert.Equal(t, "https://b.example", update("server", "https://b.example").Config.Host)
	assert.EqualValues(t, 3, resolved(s))
	c := update("name", "stage")
	assert.Equal(t, "stage", c.Name)
	assert.Equal(t, "https://b.example", c.Config.Host)
	assert.EqualValues(t, 3, resolved(s), "the name is not part of the config")
}

// TestErrorsAreNotKept: two Secrets with the same broken bytes each get an
// error that names their own Secret, however often they are listed.
func TestErrorsAreNotKept(t *testing.T) {
	broken := kubeconfig("nope", "a") // the current-context names no context
	client := fake.NewClientset(
		kubeconfigSecret("hub", "x", map[string]string{"kubeconfig": broken}),
		kubeconfigSecret("hub", "y", map[string]string{"kubeconfig": broken}),
		kubeconfigSecret("hub", "z", map[string]string{"kubeconfig": kubeconfig("a", "a")}),
	)
	s, err := secret.New(client)
	require.NoError(t, err)
	for range 2 {
		clusters := listOf(t, s)
		require.Len(t, clusters, 3)
		assert.Equal(t, got{Name: "x", Err: "hub/x|data[kubeconfig].contexts"}, summarize(t, clusters[0]))
		assert.Equal(t, got{Name: "y", Err: "hub/y|data[kubeconfig].contexts"}, summarize(t, clusters[1]))
		assert.Equal(t, got{Name: "z", Host: "https://a.example"}, summarize(t, clusters[2]))
		assert.Equal(t, 1, secret.MemoOf(s).Len())
	}
	assert.EqualValues(t, 5, resolved(s), "both errors twice, the good one once")
}

func TestListedConfigCanBeChanged(t *testing.T) {
	for _, fc := range formatCases {
		t.Run(fc.format.String(), func(t *testing.T) {
			// Two Secrets with the same description: a hit within one List too.
			one, two := fc.make("a", "1"), fc.make("b", "1")
			for _, key := range []string{"kubeconfig", "server", "config"} {
				if v, ok := one.Data[key]; ok {
					two.Data[key] = v
				}
			}
			s, err := secret.New(fake.NewClientset(one, two), secret.WithFormat(fc.format))
			require.NoError(t, err)
			want := listOf(t, s)[0].Config.Host
			for range 2 {
				clusters := listOf(t, s)
				require.Len(t, clusters, 2)
				for _, c := range clusters {
					require.Equal(t, want, c.Config.Host)
					require.Equal(t, "ca-data", string(c.Config.CAData))
					c.Config.Host = "https://changed.example"
					c.Config.CAData[0] = 'X'
				}
			}
			hits, _ := secret.MemoOf(s).Stats()
			assert.EqualValues(t, 5, hits)
		})
	}
}

// TestCertificateFileIsReadOnEveryList: with a policy that allows local
// files, a Secret may name a file whose content changes while the Secret
// stays the same.
func TestCertificateFileIsReadOnEveryList(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("ca-one"), 0o600))
	client := fake.NewClientset(kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": fmt.Sprintf(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: %q}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`, ca)}))
	s, err := secret.New(client, secret.WithTrustPolicy(trust.Policy{AllowLocalFiles: true}))
	require.NoError(t, err)
	assert.Equal(t, []byte("ca-one"), listOf(t, s)[0].Config.CAData)
	require.NoError(t, os.WriteFile(ca, []byte("ca-two"), 0o600))
	assert.Equal(t, []byte("ca-two"), listOf(t, s)[0].Config.CAData)
	assert.Zero(t, secret.MemoOf(s).Len())
}

// TestConcurrentListsWhileSecretsChange overlaps Lists, from the watch's
// cache and each with its pass of the memo, with changes, under -race.
func TestConcurrentListsWhileSecretsChange(t *testing.T) {
	for _, fc := range formatCases {
		t.Run(fc.format.String(), func(t *testing.T) {
			ctx := context.Background()
			var objs []runtime.Object
			for i := range 20 {
				objs = append(objs, fc.make(fmt.Sprintf("c%02d", i), "0"))
			}
			client := fake.NewClientset(objs...)
			s, err := secret.New(client, secret.WithFormat(fc.format))
			require.NoError(t, err)
			startWatch(t, s)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for range 20 {
						clusters, err := s.List(ctx)
						if assert.NoError(t, err) && assert.Len(t, clusters, 20) {
							clusters[1].Config.Host = "changed" // a caller's own copy
							clusters[1].Config.CAData[0] = 'X'
						}
					}
				})
			}
			wg.Go(func() {
				for i := range 10 {
					_, err := client.CoreV1().Secrets("hub").Update(ctx, fc.make("c00", fmt.Sprint(i+1)), metav1.UpdateOptions{})
					assert.NoError(t, err)
				}
			})
			wg.Wait()
			require.Eventually(t, func() bool { return hosts(listOf(t, s))["c00"] == "https://c00-10.example" }, 5*time.Second, time.Millisecond)
			clusters := listOf(t, s)
			assert.Equal(t, "https://c01-0.example", clusters[1].Config.Host)
			assert.Equal(t, "ca-data", string(clusters[1].Config.CAData))
			assert.Equal(t, 20, secret.MemoOf(s).Len())
		})
	}
}
