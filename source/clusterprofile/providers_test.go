package clusterprofile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
)

func TestParseProviders(t *testing.T) {
	ps, err := clusterprofile.ParseProviders([]byte(`{"providers": [
		{"name": "google", "execConfig": {"apiVersion": "client.authentication.k8s.io/v1beta1",
			"command": "gke-gcloud-auth-plugin", "args": ["--x"], "env": [{"name": "K", "value": "` + envSecret + `"}],
			"provideClusterInfo": true, "interactiveMode": "Always"}},
		{"name": "token", "execConfig": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/token"}}]}`))
	require.NoError(t, err)
	require.Len(t, ps, 2)
	assert.Equal(t, "google", ps[0].Name)
	assert.Equal(t, &clientcmdapi.ExecConfig{
		Command: "gke-gcloud-auth-plugin", Args: []string{"--x"}, Env: []clientcmdapi.ExecEnvVar{{Name: "K", Value: envSecret}},
		APIVersion: "client.authentication.k8s.io/v1beta1", ProvideClusterInfo: true, InteractiveMode: clientcmdapi.AlwaysExecInteractiveMode,
	}, ps[0].ExecConfig)
	assert.Equal(t, "token", ps[1].Name)

	yamlFile := "providers:\n- name: token\n  execConfig: {apiVersion: client.authentication.k8s.io/v1, command: /bin/token}\n"
	path := filepath.Join(t.TempDir(), "providers.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yamlFile), 0o600))
	ps, err = clusterprofile.ReadProviders(path)
	require.NoError(t, err)
	assert.Equal(t, "/bin/token", ps[0].ExecConfig.Command)
}

func TestParseProvidersErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{"empty", `{}`, "field providers: must not be empty"},
		{"no name", `{"providers": [{"execConfig": {"apiVersion": "v1", "command": "c"}}]}`, "field providers[0].name: must not be empty"},
		{"twice", `{"providers": [{"name": "a", "execConfig": {"apiVersion": "v1", "command": "c"}}, {"name": "a", "execConfig": {"apiVersion": "v1", "command": "c"}}]}`,
			"field providers[a]: defined more than once"},
		{"no execConfig", `{"providers": [{"name": "a"}]}`, "field providers[a].execConfig: must not be empty"},
		{"no command", `{"providers": [{"name": "a", "execConfig": {"apiVersion": "v1"}}]}`, "field providers[a].execConfig.command: must not be empty"},
		{"no apiVersion", `{"providers": [{"name": "a", "execConfig": {"command": "c"}}]}`, "field providers[a].execConfig.apiVersion: must not be empty"},
		{"an unknown field", `{"providers": [{"name": "a", "token": "` + envSecret + `"}]}`, "unknown field"},
		{"a value of the wrong type", `{"providers": [{"name": "a", "execConfig": {"command": "c", "env": [{"name": "K", "value": ["` + envSecret + `"]}]}}]}`, "cannot unmarshal"},
		{"not JSON", `{"providers": [{"name": "a", "execConfig": {"env": "` + envSecret, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clusterprofile.ParseProviders([]byte(tt.give))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cr3t")
		})
	}
	_, err := clusterprofile.ReadProviders(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorContains(t, err, "missing.json")
}
