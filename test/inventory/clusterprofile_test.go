package inventory

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

const (
	profileNS  = "fleet"
	clusterSet = "global"
	// pluginTTL is the lifetime of the plugin's credentials: client-go runs
	// the plugin again after it.
	pluginTTL = 2 * time.Second
)

// tokens holds the files the token plugin reads: one token per member.
type tokens struct{ dir string }

func (k tokens) write(t *testing.T, member, token string) {
	t.Helper()
	// Atomically: the plugin may run at any moment.
	tmp := filepath.Join(k.dir, member+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(token), 0o600))
	require.NoError(t, os.Rename(tmp, filepath.Join(k.dir, member+".token")))
}

// ran reports whether the plugin has printed token for member.
func (k tokens) ran(member, token string) bool {
	log, err := os.ReadFile(filepath.Join(k.dir, member+".log"))
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return slices.Contains(strings.Fields(string(log)), hex.EncodeToString(sum[:4]))
}

// profileStatus is a ClusterProfile's status reaching member through the
// access provider called provider.
func profileStatus(member *localcluster.Cluster, provider string, healthy string) map[string]any {
	return map[string]any{
		"version":    map[string]any{"kubernetes": "v1.37.2"},
		"properties": []any{map[string]any{"name": "region.example.com", "value": "local"}},
		"conditions": []any{map[string]any{
			"type": "ControlPlaneHealthy", "status": healthy, "reason": "Test", "message": "set by the test",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}},
		"accessProviders": []any{map[string]any{
			"name": provider,
			"cluster": map[string]any{
				"server":                     member.Server(),
				"certificate-authority-data": base64.StdEncoding.EncodeToString(member.CAData()),
				"extensions": []any{map[string]any{
					"name":      clusterprofile.ExecExtension,
					"extension": map[string]any{"cluster": member.Name()},
				}},
			},
		}},
	}
}

// putProfile creates or updates the profile called name, with status.
func putProfile(t *testing.T, profiles dynamic.ResourceInterface, name string, status map[string]any) {
	t.Helper()
	u, err := profiles.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		u = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "multicluster.x-k8s.io/v1alpha1",
			"kind":       "ClusterProfile",
			"metadata":   map[string]any{"name": name, "labels": map[string]any{"team": "e2e"}},
			"spec":       map[string]any{"displayName": name, "clusterManager": map[string]any{"name": "e2e-manager"}},
		}}
		u, err = profiles.Create(t.Context(), u, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	u.Object["status"] = status
	_, err = profiles.UpdateStatus(t.Context(), u, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// operatorProviders is the operator's side: a provider file naming the
// token plugin (after one that no profile offers), and the token files it
// reads, holding each member's token.
func operatorProviders(t *testing.T, members ...*localcluster.Cluster) (tokens, []clusterprofile.Provider) {
	t.Helper()
	k := tokens{dir: t.TempDir()}
	for _, m := range members {
		k.write(t, m.Name(), m.Token())
	}
	providerFile := filepath.Join(t.TempDir(), "providers.json")
	pf, err := json.Marshal(map[string]any{"providers": []any{
		map[string]any{"name": "unused", "execConfig": map[string]any{
			"apiVersion": "client.authentication.k8s.io/v1", "command": "/nonexistent/plugin"}},
		map[string]any{"name": "e2e-token", "execConfig": map[string]any{
			"apiVersion":         "client.authentication.k8s.io/v1",
			"command":            tokenPlugin,
			"args":               []string{"-dir", k.dir, "-ttl", pluginTTL.String()},
			"provideClusterInfo": true,
		}},
	}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(providerFile, pf, 0o600))
	providers, err := clusterprofile.ReadProviders(providerFile)
	require.NoError(t, err)
	return k, providers
}

// The ClusterProfile source against a real hub: the CRD installed, profiles
// pointing at the two member clusters, reached with the operator's exec
// plugin (test/cmd/tokenplugin) and the token each member's file holds. The
// members appear and answer; health and labels follow the profiles without a
// rebuild; a rotated token keeps the client working; a profile whose
// provider the operator does not know is an error naming the field; a
// deleted profile removes its cluster; nothing is left running.
func TestClusterProfilesOnRealHub(t *testing.T) {
	e := sharedEnv(t)
	hub, c2, c3 := e.Cluster("cluster-1"), e.Cluster("cluster-2"), e.Cluster("cluster-3")
	markMembers(t, c2, c3)
	hubDyn := adminDynamic(t, hub)
	installCRD(t, hubDyn, "testdata/clusterprofiles.yaml", clusterprofile.GroupVersionResource)
	createNamespace(t, adminClient(t, hub), profileNS, map[string]string{clusterprofile.LabelClusterSet: clusterSet})
	profiles := hubDyn.Resource(clusterprofile.GroupVersionResource).Namespace(profileNS)

	k, providers := operatorProviders(t, c2, c3)

	putProfile(t, profiles, c2.Name(), profileStatus(c2, "e2e-token", "True"))
	putProfile(t, profiles, c3.Name(), profileStatus(c3, "e2e-token", "True"))
	name2, name3 := clusterprofile.ClusterName(profileNS, c2.Name()), clusterprofile.ClusterName(profileNS, c3.Name())

	ignoreBefore := goleak.IgnoreCurrent()
	hubConfig := hub.Config()
	hubHTTP, err := rest.HTTPClientFor(hubConfig)
	require.NoError(t, err)
	hubClient, err := dynamic.NewForConfigAndClient(hubConfig, hubHTTP)
	require.NoError(t, err)
	src, err := clusterprofile.New(hubClient, providers, clusterprofile.WithNamespace(profileNS))
	require.NoError(t, err)
	builder := &recordingBuilder{ClientBuilder: fast}
	var log logs
	reg, stop := runSyncer(t, src, builder, clusterregistry.WithLogger(log.logger(t)))

	both := []string{name2, name3}
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), both) }, 30*time.Second, 10*time.Millisecond,
		"clusters of the Registry: %v", reg.Snapshot().Names())
	for _, m := range []*localcluster.Cluster{c2, c3} {
		name := clusterprofile.ClusterName(profileNS, m.Name())
		require.NoError(t, reg.Snapshot().Err(name), name)
		client, err := reg.Get(name)
		require.NoError(t, err, name)
		assert.Equal(t, "v1.37.2", client.ServerVersion().GitVersion, name)
		got, err := namespacesOf(t.Context(), client)
		require.NoError(t, err, name)
		assert.Equal(t, []string{"only-on-" + m.Name()}, got, "%s answers as itself", name)
		assert.Empty(t, client.Config().BearerToken, "the token comes from the plugin, not the profile")
		info, ok := reg.Snapshot().Cluster(name)
		require.True(t, ok)
		assert.Equal(t, map[string]string{
			"team":                                  "e2e",
			"region.example.com":                    "local",
			clusterprofile.LabelNamespace:           profileNS,
			clusterprofile.LabelName:                m.Name(),
			clusterprofile.LabelClusterManager:      "e2e-manager",
			clusterprofile.LabelClusterSet:          clusterSet,
			clusterprofile.LabelDisplayName:         m.Name(),
			clusterprofile.LabelKubernetesVersion:   "v1.37.2",
			clusterprofile.LabelControlPlaneHealthy: "True",
		}, info.Labels, name)
	}
	require.True(t, k.ran(c2.Name(), c2.Token()), "the plugin printed the member's token")

	// An unhealthy control plane shows in the label; the client stays.
	old2, err := reg.Get(name2)
	require.NoError(t, err)
	putProfile(t, profiles, c2.Name(), profileStatus(c2, "e2e-token", "False"))
	require.Eventually(t, func() bool {
		info, _ := reg.Snapshot().Cluster(name2)
		return info.Labels[clusterprofile.LabelControlPlaneHealthy] == "False"
	}, 10*time.Second, 5*time.Millisecond, "the health reaches the Registry through the watch")
	now2, err := reg.Get(name2)
	require.NoError(t, err)
	assert.Same(t, old2, now2, "a status change rebuilds nothing")

	// A rotated token: the file the plugin reads holds a new token; once
	// the plugin has printed it (its credential expires every pluginTTL),
	// the old token is revoked, and the same client keeps working.
	oldToken := c2.Token()
	newToken, err := c2.IssueToken(t.Context())
	require.NoError(t, err)
	k.write(t, c2.Name(), newToken)
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err := namespacesOf(t.Context(), now2)
		return err == nil && k.ran(c2.Name(), newToken)
	}, 30*time.Second, 100*time.Millisecond, "the plugin prints the new token")
	t.Logf("the client took the new token in %s", time.Since(start).Round(time.Millisecond))
	require.NoError(t, c2.UseToken(newToken))
	require.NoError(t, c2.RevokeToken(t.Context(), oldToken))
	got, err := namespacesOf(t.Context(), now2)
	require.NoError(t, err, "the client works after the old token is revoked")
	assert.Equal(t, []string{"only-on-" + c2.Name()}, got)
	now2again, err := reg.Get(name2)
	require.NoError(t, err)
	assert.Same(t, old2, now2again, "rotation needs no new client")

	// A profile that offers only providers the operator does not know: an
	// error naming the profile and the field; the others carry on.
	putProfile(t, profiles, "unknown", profileStatus(c3, "aws-iam", "True"))
	unknown := clusterprofile.ClusterName(profileNS, "unknown")
	// (Created, then given its status: the error of the first step, no
	// access providers, comes first.)
	require.Eventually(t, func() bool {
		info, ok := reg.Snapshot().Cluster(unknown)
		return ok && errors.Is(info.Err, clusterprofile.ErrNoProvider)
	}, 10*time.Second, 5*time.Millisecond, "error of %s: %v", unknown, reg.Snapshot().Err(unknown))
	uerr := reg.Snapshot().Err(unknown)
	var ferr *clusterregistry.FieldError
	require.ErrorAs(t, uerr, &ferr)
	assert.Equal(t, profileNS+"/unknown", ferr.Location)
	assert.Equal(t, "status.accessProviders", ferr.Field)
	assert.ErrorIs(t, uerr, clusterprofile.ErrNoProvider)
	assert.ErrorContains(t, uerr, `offers "aws-iam"; the operator's providers are "unused", "e2e-token"`)
	_, err = reg.Get(unknown)
	assert.Error(t, err)
	assert.NoError(t, reg.Snapshot().Err(name2))

	// A deleted profile removes its cluster and releases its client.
	old3, err := reg.Get(name3)
	require.NoError(t, err)
	require.NoError(t, profiles.Delete(t.Context(), c3.Name(), metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), []string{name2, unknown}) },
		10*time.Second, 5*time.Millisecond, "clusters of the Registry: %v", reg.Snapshot().Names())
	_, err = reg.Get(name3)
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
	require.Eventually(t, func() bool { return builder.releases(old3) == 1 }, 10*time.Second, 5*time.Millisecond)

	// No credential in any error: the tokens are the plugin's alone.
	for info := range reg.Snapshot().Clusters() {
		if info.Err != nil {
			for _, tok := range []string{oldToken, newToken, c3.Token()} {
				assert.NotContains(t, info.Err.Error(), tok)
			}
		}
	}

	// Stopping the Syncer releases everything and leaves nothing running.
	stop()
	log.requireNone(t, oldToken, newToken, c3.Token())
	assert.Empty(t, reg.Snapshot().Names())
	assert.Equal(t, 1, builder.releases(old2))
	verifyNoLeak(t, hubHTTP.Transport, ignoreBefore)
}
