//go:build unix

package kcfg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
)

// mkfifo makes a named pipe that nobody writes to: an open of it for reading
// blocks unless it is non-blocking.
func mkfifo(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	return path
}

// within returns f's result, or fails the test if f has not returned within
// a bound. A read that waits on fifo is then released (a non-blocking open
// for writing succeeds while a reader waits), so that a regression fails the
// test rather than hanging it.
func within[T any](t *testing.T, fifo string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case v := <-done:
		return v
	case <-ctx.Done():
	}
	t.Errorf("still blocked on the named pipe %s after 10s", fifo)
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
	return <-done
}

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
			fifo := mkfifo(t, "pipe")
			data := "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]" +
				strings.ReplaceAll(tt.kubeconfig, "PATH", fifo)
			f, err := Decode([]byte(data), Options{Location: "/etc/kube/config", Policy: clusterregistry.TrustedPolicy})
			require.NoError(t, err)

			clusters := within(t, fifo, func() []clusterregistry.Cluster { return Merge(f).Clusters() })
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
