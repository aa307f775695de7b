package secret_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/trust"
)

const mcrLabel = "sigs.k8s.io/multicluster-runtime-kubeconfig"

// kubeconfig is a kubeconfig with one context per name, each with its own
// cluster at https://NAME.example and a user with a token.
func kubeconfig(current string, names ...string) string {
	s := fmt.Sprintf("apiVersion: v1\nkind: Config\ncurrent-context: %q\nclusters:\n", current)
	for _, n := range names {
		s += fmt.Sprintf("- {name: %s, cluster: {server: \"https://%s.example\"}}\n", n, n)
	}
	s += "contexts:\n"
	for _, n := range names {
		s += fmt.Sprintf("- {name: %s, context: {cluster: %s, user: %s}}\n", n, n, n)
	}
	s += "users:\n"
	for _, n := range names {
		s += fmt.Sprintf("- {name: %s, user: {token: tok-%s-s3cr3t}}\n", n, n)
	}
	return s
}

func kubeconfigSecret(ns, name string, data map[string]string) *corev1.Secret {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{mcrLabel: "true"}},
		Data:       map[string][]byte{},
	}
	for k, v := range data {
		sec.Data[k] = []byte(v)
	}
	return sec
}

func argoSecret(ns, secretName string, data map[string]string) *corev1.Secret {
	sec := kubeconfigSecret(ns, secretName, data)
	sec.Labels = map[string]string{"argocd.argoproj.io/secret-type": "cluster"}
	return sec
}

// got is the part of a Cluster that tests compare.
type got struct {
	Name string
	Host string
	Err  string // the FieldError's Location|Field
}

func summarize(t *testing.T, c clusterregistry.Cluster) got {
	t.Helper()
	g := got{Name: c.Name}
	if c.Err != nil {
		var fe *clusterregistry.FieldError
		require.True(t, errors.As(c.Err, &fe), "Err is %T: %v", c.Err, c.Err)
		g.Err = fe.Location + "|" + fe.Field
		assert.NotContains(t, c.Err.Error(), "s3cr3t", "an error quotes a credential")
		return g
	}
	require.NotNil(t, c.Config)
	g.Host = c.Config.Host
	return g
}

func newSource(t *testing.T, opts ...secret.Option) *secret.Source {
	t.Helper()
	s, err := secret.New(fake.NewClientset(), opts...)
	require.NoError(t, err)
	return s
}

func TestKubeconfigFormat(t *testing.T) {
	const loc = "hub/prod"
	tests := []struct {
		name string
		opts []secret.Option
		give map[string]string
		want got
	}{
		{
			name: "current-context",
			give: map[string]string{"kubeconfig": kubeconfig("b", "a", "b")},
			want: got{Name: "prod", Host: "https://b.example"},
		},
		{
			name: "the only context",
			give: map[string]string{"kubeconfig": kubeconfig("", "a")},
			want: got{Name: "prod", Host: "https://a.example"},
		},
		{
			name: "several contexts, none current",
			give: map[string]string{"kubeconfig": kubeconfig("", "a", "b")},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig].current-context"},
		},
		{
			name: "current-context names no context",
			give: map[string]string{"kubeconfig": kubeconfig("nope", "a")},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig].contexts"},
		},
		{
			name: "no data",
			give: nil,
			want: got{Name: "prod", Err: loc + "|data"},
		},
		{
			name: "no kubeconfig key",
			give: map[string]string{"value": kubeconfig("a", "a")},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig]"},
		},
		{
			name: "blank kubeconfig",
			give: map[string]string{"kubeconfig": "\n"},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig]"},
		},
		{
			name: "another key",
			opts: []secret.Option{secret.WithKey("value")},
			give: map[string]string{"value": kubeconfig("a", "a")},
			want: got{Name: "prod", Host: "https://a.example"},
		},
		{
			name: "malformed",
			give: map[string]string{"kubeconfig": "users: [{name: u, user: {token: !!int tok-s3cr3t}}]"},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig]"},
		},
		{
			name: "bad entry",
			give: map[string]string{"kubeconfig": `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: nobody}}]
`},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig].contexts[x].user"},
		},
		{
			name: "local files refused",
			give: map[string]string{"kubeconfig": `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: /etc/ssl/certs/ca.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig].clusters[c].certificate-authority"},
		},
		{
			name: "token file refused",
			give: map[string]string{"kubeconfig": `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}}]
`},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig].users[u].tokenFile"},
		},
		{
			name: "exec refused by default",
			give: map[string]string{"kubeconfig": `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}}}]
`},
			want: got{Name: "prod", Err: loc + "|data[kubeconfig].users[u].exec"},
		},
		{
			name: "exec allowed by the trust policy",
			opts: []secret.Option{secret.WithTrustPolicy(trust.Policy{AllowExec: true})},
			give: map[string]string{"kubeconfig": `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}}}]
`},
			want: got{Name: "prod", Host: "https://c.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, tt.opts...)
			sec := kubeconfigSecret("hub", "prod", tt.give)
			if tt.give == nil {
				sec.Data = nil
			}
			assert.Equal(t, tt.want, summarize(t, secret.Cluster(s, sec)))
		})
	}
}

func TestArgoCDFormat(t *testing.T) {
	const loc = "argocd/cluster-1"
	tests := []struct {
		name  string
		opts  []secret.Option
		give  map[string]string
		want  got
		check func(t *testing.T, c clusterregistry.Cluster)
	}{
		{
			name: "bearer token and TLS",
			give: map[string]string{"name": "prod", "server": "https://prod.example:6443", "config": `{
				"bearerToken": "tok-s3cr3t",
				"tlsClientConfig": {"insecure": false, "serverName": "api.prod", "caData": "Y2E=", "certData": "Y2VydA==", "keyData": "a2V5"}}`},
			want: got{Name: "prod", Host: "https://prod.example:6443"},
			check: func(t *testing.T, c clusterregistry.Cluster) {
				assert.Equal(t, "tok-s3cr3t", c.Config.BearerToken)
				assert.Equal(t, "api.prod", c.Config.ServerName)
				assert.Equal(t, []byte("ca"), c.Config.CAData)
				assert.Equal(t, []byte("cert"), c.Config.CertData)
				assert.Equal(t, []byte("key"), c.Config.KeyData)
			},
		},
		{
			name: "basic auth, insecure, proxy",
			give: map[string]string{"name": "dev", "server": "https://dev.example", "config": `{
				"username": "admin", "password": "pw-s3cr3t", "tlsClientConfig": {"insecure": true},
				"proxyUrl": "http://proxy.example:3128", "disableCompression": true}`},
			want: got{Name: "dev", Host: "https://dev.example"},
			check: func(t *testing.T, c clusterregistry.Cluster) {
				assert.Equal(t, "admin", c.Config.Username)
				assert.Equal(t, "pw-s3cr3t", c.Config.Password)
				assert.True(t, c.Config.Insecure)
				assert.True(t, c.Config.DisableCompression)
				require.NotNil(t, c.Config.Proxy)
			},
		},
		{
			name: "exec provider",
			opts: []secret.Option{secret.WithTrustPolicy(trust.Policy{AllowExec: true})},
			give: map[string]string{"name": "eks", "server": "https://eks.example", "config": `{
				"execProviderConfig": {"command": "aws", "args": ["eks", "get-token"], "env": {"B": "2", "A": "1"},
				"apiVersion": "client.authentication.k8s.io/v1beta1", "installHint": "install aws"},
				"tlsClientConfig": {"caData": "Y2E="}}`},
			want: got{Name: "eks", Host: "https://eks.example"},
			check: func(t *testing.T, c clusterregistry.Cluster) {
				e := c.Config.ExecProvider
				require.NotNil(t, e)
				assert.Equal(t, "aws", e.Command)
				assert.Equal(t, []string{"eks", "get-token"}, e.Args)
				assert.Equal(t, "A", e.Env[0].Name, "sorted, so that the config compares equal")
				assert.Equal(t, "B", e.Env[1].Name)
				assert.EqualValues(t, "Never", e.InteractiveMode)
			},
		},
		{
			name: "no config is anonymous",
			give: map[string]string{"name": "anon", "server": "https://anon.example"},
			want: got{Name: "anon", Host: "https://anon.example"},
		},
		{
			name: "no name: listed under the Secret's name",
			give: map[string]string{"server": "https://x.example"},
			want: got{Name: "cluster-1", Err: loc + "|data[name]"},
		},
		{
			name: "no data",
			give: map[string]string{},
			want: got{Name: "cluster-1", Err: loc + "|data"},
		},
		{
			name: "no server",
			give: map[string]string{"name": "prod", "config": `{"bearerToken": "tok-s3cr3t"}`},
			want: got{Name: "prod", Err: loc + "|data[server]"},
		},
		{
			name: "server that is not a URL, not quoted",
			give: map[string]string{"name": "prod", "server": "https://u:s3cr3t%zz@x"},
			want: got{Name: "prod", Err: loc + "|data[server]"},
		},
		{
			name: "config that is not JSON, not quoted",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"bearerToken": tok-s3cr3t}`},
			want: got{Name: "prod", Err: loc + "|data[config]"},
		},
		{
			name: "config of the wrong type",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"bearerToken": 42, "password": "pw-s3cr3t"}`},
			want: got{Name: "prod", Err: loc + "|data[config]"},
		},
		{
			name: "base64 that is not",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"tlsClientConfig": {"keyData": "k3y-s3cr3t!"}}`},
			want: got{Name: "prod", Err: loc + "|data[config]"},
		},
		{
			name: "token and password",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"bearerToken": "tok-s3cr3t", "username": "a", "password": "pw-s3cr3t"}`},
			want: got{Name: "prod", Err: loc + "|data[config].bearerToken"},
		},
		{
			name: "certificate without key",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"tlsClientConfig": {"certData": "Y2VydA=="}}`},
			want: got{Name: "prod", Err: loc + "|data[config].tlsClientConfig"},
		},
		{
			name: "insecure with a CA",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"tlsClientConfig": {"insecure": true, "caData": "Y2E="}}`},
			want: got{Name: "prod", Err: loc + "|data[config].tlsClientConfig.insecure"},
		},
		{
			name: "proxy with a password, not quoted",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"proxyUrl": "ftp://u:s3cr3t@proxy"}`},
			want: got{Name: "prod", Err: loc + "|data[config].proxyUrl"},
		},
		{
			name: "exec without apiVersion",
			opts: []secret.Option{secret.WithTrustPolicy(trust.Policy{AllowExec: true})},
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"execProviderConfig": {"command": "aws"}}`},
			want: got{Name: "prod", Err: loc + "|data[config].execProviderConfig.apiVersion"},
		},
		{
			name: "exec without command",
			opts: []secret.Option{secret.WithTrustPolicy(trust.Policy{AllowExec: true})},
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"execProviderConfig": {"apiVersion": "client.authentication.k8s.io/v1"}}`},
			want: got{Name: "prod", Err: loc + "|data[config].execProviderConfig.command"},
		},
		{
			name: "exec refused by default",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"execProviderConfig": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}}`},
			want: got{Name: "prod", Err: loc + "|data[config].execProviderConfig"},
		},
		{
			name: "AWS auth without exec",
			give: map[string]string{"name": "prod", "server": "https://x", "config": `{"awsAuthConfig": {"clusterName": "prod"}}`},
			want: got{Name: "prod", Err: loc + "|data[config].awsAuthConfig"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, append([]secret.Option{secret.WithFormat(secret.ArgoCD)}, tt.opts...)...)
			c := secret.Cluster(s, argoSecret("argocd", "cluster-1", tt.give))
			assert.Equal(t, tt.want, summarize(t, c))
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		give []secret.Option
		want string
	}{
		{name: "selector", give: []secret.Option{secret.WithLabelSelector("a in (")}, want: "label selector"},
		{name: "format", give: []secret.Option{secret.WithFormat(secret.Format(9))}, want: "unknown format Format(9)"},
		{name: "key", give: []secret.Option{secret.WithKey("")}, want: "key must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := secret.New(fake.NewClientset(), tt.give...)
			assert.ErrorContains(t, err, tt.want)
		})
	}
	_, err := secret.New(nil)
	assert.ErrorContains(t, err, "client must not be nil")
}
