package kcfg

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/clusterregistry/clusterregistry/trust"
)

// TestSameConfigAsClientcmd checks that a context resolves to the rest.Config
// that client-go's own loading makes of the same kubeconfig, for every kind
// of setting that reaches a rest.Config. kcfg hands clientcmd checked,
// self-contained entries without a round trip through its decoder, so this
// is what says that nothing was lost or changed on the way.
func TestSameConfigAsClientcmd(t *testing.T) {
	const head = "apiVersion: v1\nkind: Config\ncurrent-context: x\n" +
		"contexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]\n"
	tests := []struct {
		name string
		give string // clusters and users
	}{
		{name: "token", give: `
clusters: [{name: c, cluster: {server: "https://c.example:6443", certificate-authority-data: Y2E=}}]
users: [{name: u, user: {token: tok-s3cr3t}}]`},
		{name: "basic auth, TLS server name, no compression", give: `
clusters: [{name: c, cluster: {server: "https://c.example", tls-server-name: other.example, disable-compression: true}}]
users: [{name: u, user: {username: admin, password: p4ss}}]`},
		{name: "client certificate", give: `
clusters: [{name: c, cluster: {server: "https://c.example", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {client-certificate-data: Y2VydA==, client-key-data: a2V5}}]`},
		{name: "impersonation", give: `
clusters: [{name: c, cluster: {server: "https://c.example"}}]
users: [{name: u, user: {token: t, as: jane, as-uid: "42", as-groups: [a, b], as-user-extra: {scopes: [s1, s2]}}}]`},
		{name: "exec, defaulted interactive mode, cluster info", give: `
clusters: [{name: c, cluster: {server: "https://c.example", extensions: [{name: client.authentication.k8s.io/exec, extension: {audience: x}}]}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: get-token, args: [--a], env: [{name: K, value: v}], provideClusterInfo: true}}}]`},
		{name: "auth provider", give: `
clusters: [{name: c, cluster: {server: "https://c.example"}}]
users: [{name: u, user: {auth-provider: {name: oidc, config: {idp-issuer-url: "https://issuer.example", client-id: id}}}}]`},
		{name: "proxy", give: `
clusters: [{name: c, cluster: {server: "https://c.example", proxy-url: "http://proxy.example:3128"}}]
users: [{name: u, user: {token: t}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(head + tt.give)
			f, err := Decode(data, Options{Location: "test", Policy: trust.Trusted})
			require.NoError(t, err)
			got := One(f)
			require.NoError(t, got.Err)

			api, err := clientcmd.Load(data)
			require.NoError(t, err)
			want, err := clientcmd.NewNonInteractiveClientConfig(*api, "x", &clientcmd.ConfigOverrides{}, nil).ClientConfig()
			require.NoError(t, err)

			assert.Equal(t, proxyAnswer(t, want), proxyAnswer(t, got.Config))
			want.Proxy, got.Config.Proxy = nil, nil
			assert.Equal(t, want, got.Config)
		})
	}
}

// proxyAnswer returns the proxy that cfg picks for a request to its host.
func proxyAnswer(t *testing.T, cfg *rest.Config) string {
	if cfg.Proxy == nil {
		return ""
	}
	u, err := url.Parse(cfg.Host)
	require.NoError(t, err)
	p, err := cfg.Proxy(&http.Request{URL: u})
	require.NoError(t, err)
	return p.String()
}
