package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestMain(m *testing.M) { clusterregistrytest.VerifyTestMain(m) }

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestNoKubeconfigPointsAtTheDemo(t *testing.T) {
	home := t.TempDir()
	var out strings.Builder
	err := run(context.Background(), &out, "", time.Second, env(map[string]string{"HOME": home}))
	require.ErrorIs(t, err, errNoKubeconfig)
	assert.Contains(t, out.String(), "No kubeconfig found: looked for "+filepath.Join(home, ".kube", "config"))
	assert.Contains(t, out.String(), "make demo")
	assert.Contains(t, out.String(), "cd examples && go run ./demo")
}

func TestListsClustersWithVersionAndError(t *testing.T) {
	srv := clusterregistrytest.NewServer(t)
	broken := clusterregistrytest.NewServer(t)
	broken.Fail(500)

	cfg := clientcmdapi.NewConfig()
	for name, s := range map[string]*clusterregistrytest.Server{"local": srv, "broken": broken} {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: s.URL(), CertificateAuthorityData: s.CAData()}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: s.Token()}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	cfg.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), "config")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))

	var out strings.Builder
	require.NoError(t, run(context.Background(), &out, "", 5*time.Second, env(map[string]string{"KUBECONFIG": path})))
	got := out.String()
	t.Log("\n" + got)
	assert.Contains(t, got, "Clusters of "+path)
	assert.Regexp(t, `local\s+\*\s+`+clusterregistrytest.ServerVersion.GitVersion+`\s+ok`, got)
	assert.Regexp(t, `broken\s+-\s+cluster "broken": server version: `, got)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(data), srv.Token()))
	assert.NotContains(t, got, srv.Token(), "no credential in the output")
}
