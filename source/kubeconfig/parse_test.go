package kubeconfig_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/trust"
)

const loc = "test.yaml"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []got
	}{
		{
			name: "one cluster per context, current-context is the default",
			give: kubeconfigYAML("b", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example:6443"}),
			want: []got{
				{Name: "a", Host: "https://a.example"},
				{Name: "b", Host: "https://b.example:6443", Default: true},
			},
		},
		{
			name: "no current-context, no default",
			give: kubeconfigYAML("", ctxSpec{"a", "https://a.example"}),
			want: []got{{Name: "a", Host: "https://a.example"}},
		},
		{
			name: "missing server fails its context only",
			give: kubeconfigYAML("a", ctxSpec{"a", `""`}, ctxSpec{"b", "https://b.example"}),
			want: []got{
				{Name: "a", Default: true, Err: loc + "|clusters[a].server"},
				{Name: "b", Host: "https://b.example"},
			},
		},
		{
			name: "unknown cluster",
			give: `
contexts:
- name: x
  context: {cluster: nope, user: u}
users:
- name: u
  user: {token: tok-s3cr3t}
`,
			want: []got{{Name: "x", Err: loc + "|contexts[x].cluster"}},
		},
		{
			name: "unknown user",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example"}
contexts:
- name: x
  context: {cluster: c, user: nope}
`,
			want: []got{{Name: "x", Err: loc + "|contexts[x].user"}},
		},
		{
			name: "context without a user",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example"}
contexts:
- name: x
  context: {cluster: c}
`,
			want: []got{{Name: "x", Err: loc + "|contexts[x].user"}},
		},
		{
			name: "context without a cluster",
			give: `
contexts:
- name: x
  context: {user: u}
`,
			want: []got{{Name: "x", Err: loc + "|contexts[x].cluster"}},
		},
		{
			name: "context defined twice",
			give: `
clusters:
- {name: a, cluster: {server: "https://a.example"}}
contexts:
- {name: a, context: {cluster: a, user: a}}
- {name: a, context: {cluster: a, user: a}}
- {name: b, context: {cluster: a, user: a}}
users:
- {name: a, user: {token: tok-s3cr3t}}
`,
			want: []got{
				{Name: "a", Err: loc + "|contexts[a]"},
				{Name: "b", Host: "https://a.example"},
			},
		},
		{
			name: "user defined twice fails the contexts that use it, quoting no token",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example"}
contexts:
- name: x
  context: {cluster: c, user: u}
- name: z
  context: {cluster: c, user: v}
users:
- name: u
  user: {token: tok-one-s3cr3t}
- name: u
  user: {password: pw-two-s3cr3t, username: admin}
- name: v
  user: {token: tok-v-s3cr3t}
`,
			want: []got{
				{Name: "x", Err: loc + "|users[u]"},
				{Name: "z", Host: "https://c.example"},
			},
		},
		{
			name: "empty context name",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example"}
contexts:
- name: ""
  context: {cluster: c, user: u}
users:
- name: u
  user: {token: tok-s3cr3t}
`,
			want: []got{{Name: "", Err: loc + "|contexts[].name"}},
		},
		{
			name: "proxy URL with a password is not quoted",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example", proxy-url: "ftp://user:s3cr3t@proxy"}
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user: {token: tok-s3cr3t}
`,
			want: []got{{Name: "x", Err: loc + "|clusters[c].proxy-url"}},
		},
		{
			name: "server URL that does not parse is not quoted",
			give: `
clusters:
- name: c
  cluster: {server: "https://user:s3cr3t%zz@c.example"}
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user: {token: tok-s3cr3t}
`,
			want: []got{{Name: "x", Err: loc + "|clusters[c].server"}},
		},
		{
			name: "certificate file and data both set",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example", certificate-authority: ca.crt, certificate-authority-data: "Y2E="}
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user: {token: tok-s3cr3t}
`,
			want: []got{{Name: "x", Err: loc + "|clusters[c].certificate-authority"}},
		},
		{
			name: "missing certificate file",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example"}
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user: {client-certificate: /nonexistent/client.crt, client-key-data: "a2V5LXMzY3IzdA=="}
`,
			want: []got{{Name: "x", Err: loc + "|users[u].client-certificate"}},
		},
		{
			name: "client-go's own checks are reported by context",
			give: `
clusters:
- name: c
  cluster: {server: "https://c.example"}
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user: {token: tok-s3cr3t, username: admin, password: pw-s3cr3t}
`,
			want: []got{{Name: "x", Err: loc + "|contexts[x]"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusters, err := kubeconfig.Parse([]byte(tt.give), loc)
			require.NoError(t, err)
			assert.Equal(t, tt.want, summarize(t, clusters))
			assertNoSecret(t, clusters, nil)
		})
	}
}

func TestParseDocumentErrors(t *testing.T) {
	tests := []struct {
		name   string
		give   string
		secret string
	}{
		{name: "syntax", give: "clusters: [\n", secret: "-"},
		{name: "wrong type", give: "users: tok-s3cr3t\n", secret: "tok-"},
		{name: "bad base64", give: "users:\n- name: u\n  user: {client-key-data: 'k3y-s3cr3t!!'}\n", secret: "k3y"},
		{name: "decoder quotes a map key", give: "? {token: tok-s3cr3t}\n: c\n", secret: "tok-"},
		{name: "decoder quotes a value", give: "users:\n- name: u\n  user: {token: !!int tok-s3cr3t}\n", secret: "tok-"},
		{name: "decoder quotes an alias", give: "users:\n- name: u\n  user: {token: *tok-s3cr3t}\n", secret: "tok-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusters, err := kubeconfig.Parse([]byte(tt.give), loc)
			require.Error(t, err)
			assert.Nil(t, clusters)
			var fe *clusterregistry.FieldError
			require.True(t, errors.As(err, &fe), "%T", err)
			assert.Equal(t, loc, fe.Location)
			assert.Equal(t, "kubeconfig", fe.Field)
			assertNoSecret(t, nil, err, tt.secret+"s3cr3t")
		})
	}
}

func TestParseBlank(t *testing.T) {
	clusters, err := kubeconfig.Parse([]byte(" \n"), loc)
	require.NoError(t, err)
	assert.Empty(t, clusters)
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token"), "tok-from-file")
	give := `
clusters:
- name: c
  cluster:
    server: https://c.example
    tls-server-name: api.internal
    certificate-authority-data: Y2EtYnl0ZXM=
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: c}
    - name: other
      extension: {x: 1}
contexts:
- name: token-file
  context: {cluster: c, user: file}
- name: exec
  context: {cluster: c, user: exec}
users:
- name: file
  user:
    tokenFile: ` + filepath.Join(dir, "token") + `
    as: alice
    as-groups: [devs]
- name: exec
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: get-token
      args: [--cluster, c]
      provideClusterInfo: true
`
	clusters, err := kubeconfig.Parse([]byte(give), loc, kubeconfig.WithTrustPolicy(trust.Trusted))
	require.NoError(t, err)
	require.Len(t, clusters, 2)

	exec := clusters[0]
	require.NoError(t, exec.Err)
	require.NotNil(t, exec.Config.ExecProvider)
	assert.Equal(t, "get-token", exec.Config.ExecProvider.Command)
	assert.Equal(t, []string{"--cluster", "c"}, exec.Config.ExecProvider.Args)
	assert.EqualValues(t, "IfAvailable", exec.Config.ExecProvider.InteractiveMode, "defaulted as client-go does")
	assert.NotNil(t, exec.Config.ExecProvider.Config, "the exec extension reaches the plugin")
	assert.Equal(t, "api.internal", exec.Config.ServerName)
	assert.Equal(t, []byte("ca-bytes"), exec.Config.CAData)

	file := clusters[1]
	require.NoError(t, file.Err)
	assert.Equal(t, filepath.Join(dir, "token"), file.Config.BearerTokenFile)
	assert.Empty(t, file.Config.BearerToken, "client-go reads the token file on use, so a rotation needs no new config")
	assert.Equal(t, "alice", file.Config.Impersonate.UserName)
	assert.Equal(t, []string{"devs"}, file.Config.Impersonate.Groups)
}

func TestParseRelativeTokenFileIsCheckedAgainstTheWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	require.NoError(t, os.WriteFile("token", []byte("t"), 0o600))
	give := `
clusters:
- {name: c, cluster: {server: "https://c.example"}}
contexts:
- {name: x, context: {cluster: c, user: u}}
- {name: z, context: {cluster: c, user: v}}
users:
- {name: u, user: {tokenFile: token}}
- {name: v, user: {tokenFile: missing}}
`
	clusters, err := kubeconfig.Parse([]byte(give), loc, kubeconfig.WithTrustPolicy(trust.Trusted))
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "x", Host: "https://c.example"},
		{Name: "z", Err: loc + "|users[v].tokenFile"},
	}, summarize(t, clusters))
}
