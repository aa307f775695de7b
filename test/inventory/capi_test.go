package inventory

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// capiKubeconfig is the kubeconfig Cluster API writes for cluster: one
// context, current, with the CA inline. (Cluster API's own carries a client
// certificate; these clusters take tokens.)
func capiKubeconfig(t *testing.T, cluster string, m *localcluster.Cluster, token string) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: m.Server(), CertificateAuthorityData: m.CAData()}
	cfg.AuthInfos[cluster+"-admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[cluster+"-admin@"+cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: cluster + "-admin"}
	cfg.CurrentContext = cluster + "-admin@" + cluster
	b, err := clientcmd.Write(*cfg)
	require.NoError(t, err)
	return b
}

// capiSecret is a Secret of cluster in ns as Cluster API writes it:
// <cluster>-<purpose>, typed and labelled, owned by the Cluster.
func capiSecret(ns, cluster, purpose string, data []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: cluster + "-" + purpose,
			Labels: map[string]string{secret.ClusterAPINameLabel: cluster},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "Cluster", Name: cluster,
				UID: "00000000-0000-0000-0000-000000000001",
			}},
		},
		Type: secret.ClusterAPISecretType,
		Data: map[string][]byte{"value": data},
	}
}

var capiClusters = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"}

// The Secret source's ClusterAPI format against a real hub: two namespaces
// each hold a cluster called "workload" (one is cluster-2, the other
// cluster-3), as Cluster API writes them, beside the certificate Secrets it
// writes too. Both appear under names that tell them apart and answer; a
// rotated kubeconfig brings a new client; a broken one is an error naming
// the Secret and the field, quoting no credential; a deleted Secret removes its
// cluster. With WithSkipUninitialized, a cluster whose Cluster has not
// initialized its control plane is left out until it has.
func TestClusterAPISecretsOnRealHub(t *testing.T) {
	e := sharedEnv(t)
	hub, c2, c3 := e.Cluster("cluster-1"), e.Cluster("cluster-2"), e.Cluster("cluster-3")
	markMembers(t, c2, c3)
	hubAdmin := adminClient(t, hub)
	hubDyn := adminDynamic(t, hub)
	installCRD(t, hubDyn, "testdata/capiclusters.yaml", capiClusters)
	const cluster = "workload"
	nsA, nsB := "capi-team-a", "capi-team-b"
	members := map[string]*localcluster.Cluster{nsA: c2, nsB: c3}
	for ns, m := range members {
		createNamespace(t, hubAdmin, ns, nil)
		for _, sec := range []*corev1.Secret{
			capiSecret(ns, cluster, "kubeconfig", capiKubeconfig(t, cluster, m, m.Token())),
			capiSecret(ns, cluster, "ca", []byte("-----BEGIN CERTIFICATE-----")),
			capiSecret(ns, cluster, "etcd", []byte("-----BEGIN CERTIFICATE-----")),
		} {
			_, err := hubAdmin.CoreV1().Secrets(ns).Create(t.Context(), sec, metav1.CreateOptions{})
			require.NoError(t, err)
		}
	}
	nameA, nameB := secret.ClusterAPIName(nsA, cluster), secret.ClusterAPIName(nsB, cluster)

	ignoreBefore := goleak.IgnoreCurrent()
	hubConfig := hub.Config()
	hubHTTP, err := rest.HTTPClientFor(hubConfig)
	require.NoError(t, err)
	hubClient, err := kubernetes.NewForConfigAndClient(hubConfig, hubHTTP)
	require.NoError(t, err)
	src, err := secret.New(hubClient, secret.WithFormat(secret.ClusterAPI))
	require.NoError(t, err)
	builder := &recordingBuilder{ClientBuilder: fast}
	var log logs
	reg, stop := runSyncer(t, src, builder, clusterregistry.WithLogger(log.logger(t)))

	both := []string{nameA, nameB}
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), both) }, 30*time.Second, 10*time.Millisecond,
		"clusters of the Registry: %v", reg.Snapshot().Names())
	for ns, m := range members {
		name := secret.ClusterAPIName(ns, cluster)
		require.NoError(t, reg.Snapshot().Err(name), name)
		client, err := reg.Get(name)
		require.NoError(t, err, name)
		got, err := namespacesOf(t.Context(), client)
		require.NoError(t, err, name)
		assert.Equal(t, []string{"only-on-" + m.Name()}, got, "%s answers as itself", name)
		info, _ := reg.Snapshot().Cluster(name)
		assert.Equal(t, map[string]string{secret.ClusterAPINameLabel: cluster, secret.LabelNamespace: ns}, info.Labels)
	}

	// Rotation: Cluster API rewrites the Secret with a new credential; the
	// watch brings a new client in, the old one is released, the old
	// token is revoked, the new client answers.
	oldA, err := reg.Get(nameA)
	require.NoError(t, err)
	oldB, err := reg.Get(nameB)
	require.NoError(t, err)
	oldToken := c2.Token()
	newToken, err := c2.IssueToken(t.Context())
	require.NoError(t, err)
	sec, err := hubAdmin.CoreV1().Secrets(nsA).Get(t.Context(), cluster+"-kubeconfig", metav1.GetOptions{})
	require.NoError(t, err)
	sec.Data["value"] = capiKubeconfig(t, cluster, c2, newToken)
	_, err = hubAdmin.CoreV1().Secrets(nsA).Update(t.Context(), sec, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := reg.Get(nameA)
		return err == nil && c.Config().BearerToken == newToken
	}, 10*time.Second, 5*time.Millisecond, "the new kubeconfig reaches the Registry through the watch")
	require.Eventually(t, func() bool { return builder.releases(oldA) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, c2.UseToken(newToken))
	require.NoError(t, c2.RevokeToken(t.Context(), oldToken))
	newA, err := reg.Get(nameA)
	require.NoError(t, err)
	got, err := namespacesOf(t.Context(), newA)
	require.NoError(t, err, "the new client works after the old token is revoked")
	assert.Equal(t, []string{"only-on-" + c2.Name()}, got)
	nowB, err := reg.Get(nameB)
	require.NoError(t, err)
	assert.Same(t, oldB, nowB, "the other namespace's cluster of the same name is not rebuilt")

	// A Secret that cannot be used is an error for its cluster only,
	// naming the Secret and the field, and quoting no credential.
	const leaked = "do-not-print-me-0123456789abcdef"
	broken := capiSecret(nsA, "broken", "kubeconfig", []byte("apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: "+leaked+"}}\n"))
	_, err = hubAdmin.CoreV1().Secrets(nsA).Create(t.Context(), broken, metav1.CreateOptions{})
	require.NoError(t, err)
	brokenName := secret.ClusterAPIName(nsA, "broken")
	require.Eventually(t, func() bool {
		info, ok := reg.Snapshot().Cluster(brokenName)
		return ok && info.Err != nil
	}, 10*time.Second, 5*time.Millisecond, "the broken Secret's error reaches the Registry")
	berr := reg.Snapshot().Err(brokenName)
	var ferr *clusterregistry.FieldError
	require.ErrorAs(t, berr, &ferr)
	assert.Equal(t, nsA+"/broken-kubeconfig", ferr.Location)
	assert.Equal(t, "data[value]", ferr.Field)
	assert.NotContains(t, berr.Error(), leaked)

	// A deleted Secret (Cluster API deletes it with its Cluster) removes
	// the cluster.
	require.NoError(t, hubAdmin.CoreV1().Secrets(nsB).Delete(t.Context(), cluster+"-kubeconfig", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), []string{brokenName, nameA}) }, 10*time.Second, 5*time.Millisecond,
		"clusters of the Registry: %v", reg.Snapshot().Names())
	require.Eventually(t, func() bool { return builder.releases(oldB) == 1 }, 10*time.Second, 5*time.Millisecond)
	stop()

	// WithSkipUninitialized: team A's Cluster has not initialized its
	// control plane, so its cluster is left out until it says it has.
	capiDyn, err := dynamic.NewForConfigAndClient(hubConfig, hubHTTP)
	require.NoError(t, err)
	clusters := hubDyn.Resource(capiClusters).Namespace(nsA)
	u, err := clusters.Create(t.Context(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
		"metadata": map[string]any{"name": cluster}, "spec": map[string]any{},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
	src, err = secret.New(hubClient, secret.WithFormat(secret.ClusterAPI), secret.WithSkipUninitialized(capiDyn))
	require.NoError(t, err)
	reg, stop = runSyncer(t, src, builder, clusterregistry.WithLogger(log.logger(t)))
	assert.Empty(t, reg.Snapshot().Names(), "clusters whose control plane is not initialized (or with no Cluster) are left out")
	u.Object["status"] = map[string]any{
		"initialization": map[string]any{"controlPlaneInitialized": true},
		"conditions": []any{map[string]any{"type": "ControlPlaneInitialized", "status": "True",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "reason": "Initialized"}},
	}
	_, err = clusters.UpdateStatus(t.Context(), u, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), []string{nameA}) }, 10*time.Second, 5*time.Millisecond,
		"the initialized cluster reaches the Registry through the watch of Clusters")
	client, err := reg.Get(nameA)
	require.NoError(t, err)
	got, err = namespacesOf(t.Context(), client)
	require.NoError(t, err)
	assert.Equal(t, []string{"only-on-" + c2.Name()}, got)

	stop()
	assert.Empty(t, reg.Snapshot().Names())
	log.requireNone(t, oldToken, newToken, c3.Token(), leaked)
	verifyNoLeak(t, hubHTTP.Transport, ignoreBefore)
}
