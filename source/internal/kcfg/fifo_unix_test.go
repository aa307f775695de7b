//go:build unix

package kcfg

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/trust"
)

// TestNamedPipeIsRefusedWithoutBlocking points a trusted kubeconfig's file
// references at a named pipe with no writer: an open that waited for one
// would block the source (and the kubeconfig poller) forever.
func TestNamedPipeIsRefusedWithoutBlocking(t *testing.T) {
	tests := []struct {
		name       string
		kubeconfig string
		wantField  string
	}{
		{
			name:      "certificate authority",
			wantField: "clusters[c].certificate-authority",
			kubeconfig: `
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: "PATH"}}]
users: [{name: u, user: {token: tok-s3cr3t}}]`,
		},
		{
			name:      "client certificate",
			wantField: "users[u].client-certificate",
			kubeconfig: `
clusters: [{name: c, cluster: {server: "https://c.example"}}]
users: [{name: u, user: {client-certificate: "PATH", client-key-data: a2V5}}]`,
		},
		{
			name:      "client key",
			wantField: "users[u].client-key",
			kubeconfig: `
clusters: [{name: c, cluster: {server: "https://c.example"}}]
users: [{name: u, user: {client-certificate-data: Y2VydA==, client-key: "PATH"}}]`,
		},
		{
			name:      "token file",
			wantField: "users[u].tokenFile",
			kubeconfig: `
clusters: [{name: c, cluster: {server: "https://c.example"}}]
users: [{name: u, user: {tokenFile: "PATH"}}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fifo := trusttest.NamedPipe(t)
			data := "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]" +
				strings.ReplaceAll(tt.kubeconfig, "PATH", fifo)
			f, err := Decode([]byte(data), Options{Location: "/etc/kube/config", Policy: trust.Trusted})
			require.NoError(t, err)

			clusters := trusttest.Within(t, fifo, func() []clusterregistry.Cluster { return Merge(f).Clusters() })
			require.Len(t, clusters, 1)
			c := clusters[0]
			assert.Equal(t, "x", c.Name)
			assert.Nil(t, c.Config)
			var fe *clusterregistry.FieldError
			require.ErrorAs(t, c.Err, &fe)
			assert.Equal(t, "/etc/kube/config", fe.Location)
			assert.Equal(t, tt.wantField, fe.Field)
			assert.EqualError(t, c.Err, "/etc/kube/config: field "+tt.wantField+": "+fifo+" is not a regular file")
		})
	}
}
