//go:build unix

package incluster_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/incluster"
	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
)

// TestNamedPipeIsRefusedWithoutBlocking names a named pipe with no writer as
// the CA file and as the token file. An open that waited for a writer would
// block List forever; after a bound, the test releases such an open and
// fails.
func TestNamedPipeIsRefusedWithoutBlocking(t *testing.T) {
	tokenFile, caFile := serviceAccount(t, "tok-s3cr3t", "ca-bytes")
	fifo := trusttest.NamedPipe(t)
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
			r := trusttest.Within(t, fifo, func() result {
				clusters, err := src.List(context.Background())
				return result{clusters, err}
			})
			require.NoError(t, r.err)
			require.Len(t, r.clusters, 1)
			assert.Nil(t, r.clusters[0].Config)
			assert.EqualError(t, r.clusters[0].Err, "in-cluster config: field "+tt.wantField+": "+fifo+" is not a regular file")
		})
	}
}
