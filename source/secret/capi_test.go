package secret_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/secret"
)

// capiSecret is a Secret as Cluster API writes it for cluster in ns, with
// data as its data.
func capiSecret(ns, cluster string, data map[string]string) *corev1.Secret {
	sec := kubeconfigSecret(ns, cluster+"-kubeconfig", data)
	sec.Labels = map[string]string{secret.ClusterAPINameLabel: cluster}
	sec.Type = secret.ClusterAPISecretType
	return sec
}

func TestClusterAPIFormat(t *testing.T) {
	const loc = "capi/prod-kubeconfig"
	tests := []struct {
		name string
		opts []secret.Option
		give *corev1.Secret
		want got
	}{
		{
			name: "as Cluster API writes it",
			give: capiSecret("capi", "prod", map[string]string{"value": kubeconfig("a", "a")}),
			want: got{Name: "capi:prod", Host: "https://a.example"},
		},
		{
			name: "no value key",
			give: capiSecret("capi", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")}),
			want: got{Name: "capi:prod", Err: loc + "|data[value]"},
		},
		{
			name: "another key",
			opts: []secret.Option{secret.WithKey("kubeconfig")},
			give: capiSecret("capi", "prod", map[string]string{"kubeconfig": kubeconfig("a", "a")}),
			want: got{Name: "capi:prod", Host: "https://a.example"},
		},
		{
			name: "a malformed kubeconfig",
			give: capiSecret("capi", "prod", map[string]string{"value": "users: [{name: u, user: {token: tok-s3cr3t}}"}),
			want: got{Name: "capi:prod", Err: loc + "|data[value]"},
		},
		{
			name: "an invalid cluster name",
			give: capiSecret("capi", "prod/x", map[string]string{"value": kubeconfig("a", "a")}),
			want: got{Name: "capi:prod/x", Err: "capi/prod/x-kubeconfig|metadata.labels[cluster.x-k8s.io/cluster-name]"},
		},
		{
			name: "renamed",
			opts: []secret.Option{secret.WithRename(func(n string) string { return "capi-" + n[len("capi:"):] })},
			give: capiSecret("capi", "prod", map[string]string{"value": kubeconfig("a", "a")}),
			want: got{Name: "capi-prod", Host: "https://a.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, append([]secret.Option{secret.WithFormat(secret.ClusterAPI)}, tt.opts...)...)
			c := secret.Cluster(s, tt.give)
			assert.Equal(t, tt.want, summarize(t, c))
		})
	}
}

func TestClusterAPILabels(t *testing.T) {
	s := newSource(t, secret.WithFormat(secret.ClusterAPI))
	sec := capiSecret("capi", "prod", map[string]string{"value": kubeconfig("a", "a")})
	c := secret.Cluster(s, sec)
	require.NoError(t, c.Err)
	assert.Equal(t, map[string]string{secret.ClusterAPINameLabel: "prod", secret.LabelNamespace: "capi"}, c.Labels)
	assert.Equal(t, map[string]string{secret.ClusterAPINameLabel: "prod"}, sec.Labels, "the Secret's labels are not changed")
}

// TestClusterAPISelection lists what Cluster API writes beside its
// kubeconfig Secrets, which the source must leave out, and clusters of one
// name in two namespaces, which it must tell apart.
func TestClusterAPISelection(t *testing.T) {
	kc := map[string]string{"value": kubeconfig("a", "a")}
	ca := capiSecret("capi", "prod", kc)
	ca.Name = "prod-ca" // a certificate Secret, labelled and typed alike
	user := capiSecret("capi", "prod", kc)
	user.Name = "prod-user-kubeconfig"
	opaque := capiSecret("capi", "stage", kc)
	opaque.Type = corev1.SecretTypeOpaque
	other := capiSecret("capi", "stage", kc)
	other.Name = "prod-kubeconfig-old"
	client := fake.NewClientset(capiSecret("capi", "prod", kc), capiSecret("team-b", "prod", kc), ca, user, opaque, other)
	s, err := secret.New(client, secret.WithFormat(secret.ClusterAPI))
	require.NoError(t, err)

	clusters, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"capi:prod", "team-b:prod"}, names(clusters))
	for _, c := range clusters {
		assert.NoError(t, c.Err, c.Name)
	}

	startWatch(t, s)
	clusters, err = s.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"capi:prod", "team-b:prod"}, names(clusters), "from the watch's cache")
}

func names(clusters []clusterregistry.Cluster) []string {
	out := make([]string, len(clusters))
	for i, c := range clusters {
		out[i] = c.Name
	}
	return out
}

var capiClusters = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"}

// capiCluster is a Cluster API Cluster; status is its status, nil for none.
func capiCluster(ns, name string, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2",
		"kind":       "Cluster",
		"metadata":   map[string]any{"namespace": ns, "name": name},
	}}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

func condition(typ, status string) map[string]any {
	return map[string]any{"type": typ, "status": status}
}

func TestSkipUninitialized(t *testing.T) {
	kc := map[string]string{"value": kubeconfig("a", "a")}
	secrets := fake.NewClientset(
		capiSecret("capi", "v1beta2", kc), capiSecret("capi", "v1beta2-condition", kc),
		capiSecret("capi", "v1beta1", kc), capiSecret("capi", "v1beta1-in-v1beta2", kc),
		capiSecret("capi", "provisioning", kc), capiSecret("capi", "false", kc),
		capiSecret("capi", "no-cluster", kc), capiSecret("other", "v1beta2", kc),
	)
	clusters := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{capiClusters: "ClusterList"},
		capiCluster("capi", "v1beta2", map[string]any{"initialization": map[string]any{"controlPlaneInitialized": true}}),
		capiCluster("capi", "v1beta2-condition", map[string]any{"conditions": []any{condition("ControlPlaneInitialized", "True")}}),
		capiCluster("capi", "v1beta1", map[string]any{"conditions": []any{condition("Ready", "False"), condition("ControlPlaneInitialized", "True")}}),
		capiCluster("capi", "v1beta1-in-v1beta2", map[string]any{"v1beta2": map[string]any{"conditions": []any{condition("ControlPlaneInitialized", "True")}}}),
		capiCluster("capi", "provisioning", nil),
		capiCluster("capi", "false", map[string]any{"initialization": map[string]any{"controlPlaneInitialized": false},
			"conditions": []any{condition("ControlPlaneInitialized", "False")}}),
		// The same name in another namespace says nothing of capi's.
		capiCluster("other", "no-cluster", map[string]any{"initialization": map[string]any{"controlPlaneInitialized": true}}),
	)
	want := []string{"capi:v1beta1", "capi:v1beta1-in-v1beta2", "capi:v1beta2", "capi:v1beta2-condition"}

	s, err := secret.New(secrets, secret.WithFormat(secret.ClusterAPI), secret.WithNamespace("capi"),
		secret.WithSkipUninitialized(clusters))
	require.NoError(t, err)
	listed, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, want, names(listed), "asking the API server")

	r := startWatch(t, s)
	listed, err = s.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, want, names(listed), "from the watch's caches")

	// A cluster whose control plane comes up is listed at once.
	before := r.changes.Load()
	_, err = clusters.Resource(capiClusters).Namespace("capi").Update(context.Background(),
		capiCluster("capi", "provisioning", map[string]any{"initialization": map[string]any{"controlPlaneInitialized": true}}),
		metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.changes.Load() > before }, 5*time.Second, time.Millisecond,
		"the watch reports the initialized cluster")
	listed, err = s.List(context.Background())
	require.NoError(t, err)
	assert.Contains(t, names(listed), "capi:provisioning")

	// A change of status that does not initialize it is no change.
	before = r.changes.Load()
	_, err = clusters.Resource(capiClusters).Namespace("capi").Update(context.Background(),
		capiCluster("capi", "false", map[string]any{"conditions": []any{condition("ControlPlaneInitialized", "False"), condition("Ready", "False")}}),
		metav1.UpdateOptions{})
	require.NoError(t, err)
	// Followed by a Cluster's creation, which is: the informer delivers
	// events in order, so once that one is seen, the update was seen too.
	_, err = clusters.Resource(capiClusters).Namespace("capi").Create(context.Background(),
		capiCluster("capi", "no-cluster", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.changes.Load() > before }, 5*time.Second, time.Millisecond)
	r.stop()
	r.wait(t)
	assert.Equal(t, before+1, r.changes.Load(), "only the Cluster's creation was a change")
}

func TestSkipUninitializedOptions(t *testing.T) {
	clusters := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	_, err := secret.New(fake.NewClientset(), secret.WithSkipUninitialized(clusters))
	assert.ErrorContains(t, err, "WithSkipUninitialized needs the ClusterAPI format, not Kubeconfig")
	_, err = secret.New(fake.NewClientset(), secret.WithFormat(secret.ClusterAPI), secret.WithSkipUninitialized(clusters),
		secret.WithClusterAPIVersion(""))
	assert.ErrorContains(t, err, "version must not be empty")
	_, err = secret.New(fake.NewClientset(), secret.WithFormat(secret.ClusterAPI), secret.WithKey(""))
	assert.ErrorContains(t, err, "key must not be empty")
	assert.Equal(t, "ClusterAPI", secret.ClusterAPI.String())
}

func TestSkipUninitializedListFails(t *testing.T) {
	// As a hub without Cluster API's CRDs, or without the right to list them.
	clusters := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{capiClusters: "ClusterList"})
	clusters.PrependReactor("list", "clusters", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`clusters.cluster.x-k8s.io is forbidden`)
	})
	s, err := secret.New(fake.NewClientset(), secret.WithFormat(secret.ClusterAPI), secret.WithSkipUninitialized(clusters))
	require.NoError(t, err)
	_, err = s.List(context.Background())
	assert.ErrorContains(t, err, "list Cluster API clusters: clusters.cluster.x-k8s.io is forbidden")
}
