//go:build unix

package incluster_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/incluster"
)

// TestNamedPipeIsRefusedWithoutBlocking names a named pipe with no writer as
// the CA file and as the token file. An open that waited for a writer would
// block List forever; after a bound, the test releases such an open (a
// non-blocking open for writing succeeds while a reader waits) and fails.
func TestNamedPipeIsRefusedWithoutBlocking(t *testing.T) {
	tokenFile, caFile := serviceAccount(t, "tok-s3cr3t", "ca-bytes")
	fifo := filepath.Join(t.TempDir(), "pipe")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	env := getenv(map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})

	tests := []struct {
		name      string
		give      []incluster.Option
		wantField string
	}{
		{name: "CA file", give: []incluster.Option{env, incluster.WithTokenFile(tokenFile), incluster.WithCAFile(fifo)}, wantField: "caFile"},
		{name: "token file", give: []incluster.Option{env, incluster.WithTokenFile(fifo), incluster.WithCAFile(caFile)}, wantField: "tokenFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := incluster.New(tt.give...)
			require.NoError(t, err)
			type result struct {
				clusters []clusterregistry.Cluster
				err      error
			}
			done := make(chan result, 1)
			go func() {
				clusters, err := src.List(context.Background())
				done <- result{clusters, err}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var r result
			select {
			case r = <-done:
			case <-ctx.Done():
				t.Errorf("List still blocked on the named pipe after 10s")
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				r = <-done
			}
			require.NoError(t, r.err)
			require.Len(t, r.clusters, 1)
			assert.Nil(t, r.clusters[0].Config)
			assert.EqualError(t, r.clusters[0].Err, "in-cluster config: field "+tt.wantField+": "+fifo+" is not a regular file")
		})
	}
}
