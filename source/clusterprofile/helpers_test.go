package clusterprofile_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// envSecret is an environment value of a provider or an extension: no error
// may quote it.
const envSecret = "env-s3cr3t-value"

// provider is an operator's provider called name.
func provider(name string) clusterprofile.Provider {
	return clusterprofile.Provider{Name: name, ExecConfig: &clientcmdapi.ExecConfig{
		Command:    "/usr/local/bin/" + name + "-plugin",
		Args:       []string{"--flag"},
		Env:        []clientcmdapi.ExecEnvVar{{Name: "TOKEN", Value: envSecret}},
		APIVersion: "client.authentication.k8s.io/v1",
	}}
}

// access is an access provider entry of a profile's status.
func access(name, server string, extra map[string]any) map[string]any {
	cluster := map[string]any{"server": server}
	for k, v := range extra {
		cluster[k] = v
	}
	return map[string]any{"name": name, "cluster": cluster}
}

// profile is a ClusterProfile in ns called name with status.
func profile(ns, name string, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1",
		"kind":       "ClusterProfile",
		"metadata":   map[string]any{"namespace": ns, "name": name},
		"spec":       map[string]any{"displayName": name, "clusterManager": map[string]any{"name": "ocm"}},
	}}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

// newClient is a fake hub holding objs.
func newClient(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{
			clusterprofile.GroupVersionResource:     "ClusterProfileList",
			{Version: "v1", Resource: "namespaces"}: "NamespaceList",
		}, objs...)
}

func newSource(t *testing.T, providers []clusterprofile.Provider, opts ...clusterprofile.Option) *clusterprofile.Source {
	t.Helper()
	s, err := clusterprofile.New(newClient(), providers, opts...)
	require.NoError(t, err)
	return s
}

// got is the part of a Cluster that tests compare.
type got struct {
	Name string
	Host string
	// Exec is the command of the exec plugin.
	Exec string
	Err  string // the FieldError's Location|Field
}

func summarize(t *testing.T, c clusterregistry.Cluster) got {
	t.Helper()
	g := got{Name: c.Name}
	if c.Err != nil {
		var fe *clusterregistry.FieldError
		require.True(t, errors.As(c.Err, &fe), "Err is %T: %v", c.Err, c.Err)
		g.Err = fe.Location + "|" + fe.Field
		assert.Nil(t, c.Config)
		assert.NotContains(t, c.Err.Error(), "s3cr3t", "an error quotes a credential")
		return g
	}
	require.NotNil(t, c.Config)
	g.Host = c.Config.Host
	require.NotNil(t, c.Config.ExecProvider)
	g.Exec = c.Config.ExecProvider.Command
	return g
}
