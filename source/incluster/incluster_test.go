package incluster_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/incluster"
	"github.com/clusterregistry/clusterregistry/trust"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func getenv(vars map[string]string) incluster.Option {
	return incluster.WithGetenv(func(k string) string { return vars[k] })
}

// serviceAccount writes a token and a CA file and returns their options.
func serviceAccount(t *testing.T, token, ca string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token), 0o600))
	require.NoError(t, os.WriteFile(caFile, []byte(ca), 0o600))
	return tokenFile, caFile
}

func emptyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	return path
}

func TestList(t *testing.T) {
	tokenFile, caFile := serviceAccount(t, "tok-s3cr3t", "ca-bytes")
	inCluster := map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	files := []incluster.Option{incluster.WithTokenFile(tokenFile), incluster.WithCAFile(caFile)}

	type want struct {
		Name    string
		Host    string
		Default bool
		Field   string // of the FieldError, if any
	}
	tests := []struct {
		name string
		give []incluster.Option
		want []want
	}{
		{
			name: "in a cluster",
			give: append([]incluster.Option{getenv(inCluster)}, files...),
			want: []want{{Name: "in-cluster", Host: "https://10.0.0.1:443"}},
		},
		{
			name: "IPv6, named, default",
			give: append([]incluster.Option{
				getenv(map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}),
				incluster.WithName("home"), incluster.WithDefault(true),
			}, files...),
			want: []want{{Name: "home", Host: "https://[fd00::1]:6443", Default: true}},
		},
		{
			name: "not in a cluster",
			give: append([]incluster.Option{getenv(nil)}, files...),
			want: []want{{Name: "in-cluster", Field: "env KUBERNETES_SERVICE_HOST"}},
		},
		{
			name: "no port",
			give: append([]incluster.Option{getenv(map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"})}, files...),
			want: []want{{Name: "in-cluster", Field: "env KUBERNETES_SERVICE_PORT"}},
		},
		{
			name: "optional, not in a cluster",
			give: append([]incluster.Option{getenv(nil), incluster.Optional()}, files...),
			want: []want{},
		},
		{
			name: "no token file",
			give: []incluster.Option{getenv(inCluster), incluster.WithTokenFile(filepath.Join(t.TempDir(), "none")), incluster.WithCAFile(caFile)},
			want: []want{{Name: "in-cluster", Field: "tokenFile"}},
		},
		{
			name: "no CA file",
			give: []incluster.Option{getenv(inCluster), incluster.WithTokenFile(tokenFile), incluster.WithCAFile(filepath.Join(t.TempDir(), "none"))},
			want: []want{{Name: "in-cluster", Field: "caFile"}},
		},
		{
			name: "empty CA file",
			give: []incluster.Option{getenv(inCluster), incluster.WithTokenFile(tokenFile), incluster.WithCAFile(emptyFile(t))},
			want: []want{{Name: "in-cluster", Field: "caFile"}},
		},
		{
			name: "CA path is a directory",
			give: []incluster.Option{getenv(inCluster), incluster.WithTokenFile(tokenFile), incluster.WithCAFile(t.TempDir())},
			want: []want{{Name: "in-cluster", Field: "caFile"}},
		},
		{
			name: "token path is a directory",
			give: []incluster.Option{getenv(inCluster), incluster.WithTokenFile(t.TempDir()), incluster.WithCAFile(caFile)},
			want: []want{{Name: "in-cluster", Field: "tokenFile"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := incluster.New(tt.give...)
			require.NoError(t, err)
			clusters, err := src.List(context.Background())
			require.NoError(t, err)
			gotten := []want{}
			for _, c := range clusters {
				w := want{Name: c.Name, Default: c.Default}
				if c.Err != nil {
					var fe *clusterregistry.FieldError
					require.True(t, errors.As(c.Err, &fe), "%T", c.Err)
					w.Field = fe.Field
					assert.NotContains(t, c.Err.Error(), "s3cr3t")
				} else {
					w.Host = c.Config.Host
					assert.Equal(t, tokenFile, c.Config.BearerTokenFile)
					assert.Empty(t, c.Config.BearerToken, "client-go reads the file, and re-reads it when rotated")
					assert.Equal(t, []byte("ca-bytes"), c.Config.CAData)
				}
				gotten = append(gotten, w)
			}
			assert.Equal(t, tt.want, gotten)
		})
	}
}

func TestNewValidates(t *testing.T) {
	_, err := incluster.New(incluster.WithName(""), incluster.WithGetenv(nil))
	assert.ErrorContains(t, err, "name must not be empty")
	assert.ErrorContains(t, err, "getenv")
}

func TestLabels(t *testing.T) {
	labels := map[string]string{"env": "prod"}
	src, err := incluster.New(incluster.WithLabels(labels), getenv(nil))
	require.NoError(t, err)
	labels["env"] = "changed"
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"env": "prod"}, clusters[0].Labels, "the Source keeps its own copy")
}

// TestAgainstATLSServer builds a real client with ClientBuilder from the
// in-cluster config, against a TLS server that checks the token.
func TestAgainstATLSServer(t *testing.T) {
	const token = "sa-token-value"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	}))
	defer srv.Close()
	srv.Config.SetKeepAlivesEnabled(false)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	tokenFile, caFile := serviceAccount(t, token, string(ca))
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(u.Host)
	require.NoError(t, err)

	src, err := incluster.New(incluster.WithTokenFile(tokenFile), incluster.WithCAFile(caFile), incluster.WithDefault(true),
		getenv(map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}))
	require.NoError(t, err)
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{},
		clusterregistry.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.NoError(t, syncer.WaitForFirstSync(ctx))

	c, err := syncer.Registry().Default()
	require.NoError(t, err, "the build asked /version with the token and trusted the CA")
	assert.Equal(t, "v1.37.2", c.ServerVersion().GitVersion)
	assert.Equal(t, "in-cluster", c.Name())
}

func TestTrustPolicy(t *testing.T) {
	inCluster := getenv(map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})
	dir := t.TempDir()
	missing := incluster.WithTokenFile(filepath.Join(dir, "missing-token"))
	caFile := incluster.WithCAFile(filepath.Join(dir, "missing-ca"))

	src, err := incluster.New(inCluster, missing, caFile, incluster.WithTrustPolicy(trust.Untrusted))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, clusters[0].Err, &fe)
	assert.Equal(t, "in-cluster config", fe.Location)
	assert.Equal(t, "caFile", fe.Field)
	assert.ErrorIs(t, clusters[0].Err, trust.ErrRefused, "refused before the missing files were looked for")
	assert.ErrorContains(t, clusters[0].Err, "so are config.bearerTokenFile")

	src, err = incluster.New(inCluster, missing, caFile)
	require.NoError(t, err)
	clusters, err = src.List(context.Background())
	require.NoError(t, err)
	assert.ErrorIs(t, clusters[0].Err, os.ErrNotExist, "trust.Trusted by default: the files are looked for")
}
