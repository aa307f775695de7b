package kubeconfig_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/trust"
)

// TestExecRunsOnlyFromTrustedSources drives a real Syncer with the library's
// ClientBuilder against a TLS server that only an exec plugin's token opens:
// an accepted plugin really runs when the client is built.
func TestExecRunsOnlyFromTrustedSources(t *testing.T) {
	t.Run("Parse refuses it by default", func(t *testing.T) {
		srv := trusttest.NewServer(t)
		marker := trusttest.Marker(t)
		clusters, err := kubeconfig.Parse([]byte(trusttest.ExecKubeconfig(srv, marker)), "upload")
		require.NoError(t, err)
		reg := trusttest.RunSyncer(t, clusterregistry.NewMemorySource(clusters...))

		_, err = reg.Get("x")
		require.Error(t, err)
		trusttest.RequireRefused(t, reg.Snapshot().Err("x"), "upload", "users[u].exec")
		assert.False(t, trusttest.Exists(t, marker), "the command ran")
		assert.Zero(t, srv.Authorized())
	})
	t.Run("a file source refuses it under trust.Untrusted", func(t *testing.T) {
		srv := trusttest.NewServer(t)
		marker := trusttest.Marker(t)
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, trusttest.ExecKubeconfig(srv, marker))
		src, err := kubeconfig.New(kubeconfig.WithPath(path), kubeconfig.WithTrustPolicy(trust.Untrusted))
		require.NoError(t, err)
		reg := trusttest.RunSyncer(t, src)

		trusttest.RequireRefused(t, reg.Snapshot().Err("x"), path, "users[u].exec")
		assert.False(t, trusttest.Exists(t, marker), "the command ran")
		assert.Zero(t, srv.Authorized())
	})
	t.Run("a file source runs it by default", func(t *testing.T) {
		srv := trusttest.NewServer(t)
		marker := trusttest.Marker(t)
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, trusttest.ExecKubeconfig(srv, marker))
		src, err := kubeconfig.New(kubeconfig.WithPath(path))
		require.NoError(t, err)
		reg := trusttest.RunSyncer(t, src)

		c, err := reg.Get("x")
		require.NoError(t, err, "the plugin's token opened the server")
		assert.Equal(t, "v1.37.2", c.ServerVersion().GitVersion)
		assert.True(t, trusttest.Exists(t, marker), "the command did not run: this test could not fail")
		assert.Positive(t, srv.Authorized())
	})
	t.Run("Parse runs it when the caller allows exec", func(t *testing.T) {
		srv := trusttest.NewServer(t)
		marker := trusttest.Marker(t)
		clusters, err := kubeconfig.Parse([]byte(trusttest.ExecKubeconfig(srv, marker)), "upload",
			kubeconfig.WithTrustPolicy(trust.Policy{AllowExec: true}))
		require.NoError(t, err)
		reg := trusttest.RunSyncer(t, clusterregistry.NewMemorySource(clusters...))

		_, err = reg.Get("x")
		require.NoError(t, err)
		assert.True(t, trusttest.Exists(t, marker))
	})
}

// fileKubeconfigs are kubeconfigs that name one local file each, at PATH.
var fileKubeconfigs = []struct {
	name, field, kubeconfig string
}{
	{"client key", "users[u].client-key", `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {client-certificate-data: Y2VydA==, client-key: "PATH"}}]
`},
	{"client certificate", "users[u].client-certificate", `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {client-certificate: "PATH", client-key-data: a2V5}}]
`},
	{"certificate authority", "clusters[c].certificate-authority", `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: "PATH"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`},
	{"token file", "users[u].tokenFile", `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {tokenFile: "PATH"}}]
`},
}

func withPath(kubeconfig, path string) []byte {
	return []byte(strings.ReplaceAll(kubeconfig, "PATH", path))
}

// TestLocalFilesAreNotOpenedWhenUntrusted points untrusted kubeconfigs at a
// named pipe that notices being opened, at a missing file, and at a key
// file, and checks that none is touched.
func TestLocalFilesAreNotOpenedWhenUntrusted(t *testing.T) {
	t.Run("the tripwire sees an open", func(t *testing.T) {
		wire := trusttest.NewTripwire(t)
		fh, err := os.Open(wire.Path) // the tripwire's writer lets it return
		require.NoError(t, err)
		require.NoError(t, fh.Close())
		assert.True(t, wire.Stop(), "the tripwire missed an open: the checks below could not fail")
	})
	for _, tt := range fileKubeconfigs {
		t.Run(tt.name, func(t *testing.T) {
			t.Run("pipe untouched", func(t *testing.T) {
				wire := trusttest.NewTripwire(t)
				clusters, err := kubeconfig.Parse(withPath(tt.kubeconfig, wire.Path), "upload")
				require.NoError(t, err)
				require.Len(t, clusters, 1)
				trusttest.RequireRefused(t, clusters[0].Err, "upload", tt.field)
				assert.Nil(t, clusters[0].Config)
				assert.False(t, wire.Stop(), "the source opened the file")
			})
			t.Run("pipe refused without an open when trusted", func(t *testing.T) {
				wire := trusttest.NewTripwire(t)
				clusters, err := kubeconfig.Parse(withPath(tt.kubeconfig, wire.Path), "upload",
					kubeconfig.WithTrustPolicy(trust.Trusted))
				require.NoError(t, err)
				require.Len(t, clusters, 1)
				assert.EqualError(t, clusters[0].Err, "upload: field "+tt.field+": "+wire.Path+" is not a regular file")
				// An open would wait for a writer, which may never come.
				assert.False(t, wire.Stop(), "the source opened the pipe")
			})
			t.Run("missing file is refused, not looked for", func(t *testing.T) {
				missing := filepath.Join(t.TempDir(), "missing")
				clusters, err := kubeconfig.Parse(withPath(tt.kubeconfig, missing), "upload")
				require.NoError(t, err)
				trusttest.RequireRefused(t, clusters[0].Err, "upload", tt.field)
				assert.NotErrorIs(t, clusters[0].Err, fs.ErrNotExist)

				clusters, err = kubeconfig.Parse(withPath(tt.kubeconfig, missing), "upload",
					kubeconfig.WithTrustPolicy(trust.Trusted))
				require.NoError(t, err)
				assert.ErrorIs(t, clusters[0].Err, fs.ErrNotExist, "trusted, the file is looked for")
			})
		})
	}
}

func TestKeyFileContentStaysOnDisk(t *testing.T) {
	const content = "-----BEGIN PRIVATE KEY-----\nk3y-s3cr3tvalue\n-----END PRIVATE KEY-----\n"
	keyFile := filepath.Join(t.TempDir(), "client.key")
	writeFile(t, keyFile, content)
	kc := []byte(trusttest.KeyFileKubeconfig("https://c.example", keyFile))

	clusters, err := kubeconfig.Parse(kc, "upload")
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	trusttest.RequireRefused(t, clusters[0].Err, "upload", "users[u].client-key")
	assert.Nil(t, clusters[0].Config)
	assert.NotContains(t, clusters[0].Err.Error(), "k3y")

	// The same kubeconfig, trusted, does read the file: the check above
	// could fail.
	clusters, err = kubeconfig.Parse(kc, "upload", kubeconfig.WithTrustPolicy(trust.Trusted))
	require.NoError(t, err)
	require.NoError(t, clusters[0].Err)
	assert.Equal(t, content, string(clusters[0].Config.KeyData))
}

func TestTrustPolicyRefusals(t *testing.T) {
	tests := []struct {
		name   string
		policy trust.Policy
		give   string
		want   got
	}{
		{
			name:   "auth provider refused by default",
			policy: trust.Untrusted,
			give: `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {auth-provider: {name: oidc, config: {id-token: tok-s3cr3t}}}}]
`,
			want: got{Name: "x", Default: true, Err: "upload|users[u].auth-provider"},
		},
		{
			name:   "insecure and proxy accepted by default",
			policy: trust.Untrusted,
			give: `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", insecure-skip-tls-verify: true, proxy-url: "http://proxy:3128"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`,
			want: got{Name: "x", Default: true, Host: "https://c.example"},
		},
		{
			name:   "the zero policy refuses insecure",
			policy: trust.Policy{},
			give: `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", insecure-skip-tls-verify: true}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`,
			want: got{Name: "x", Default: true, Err: "upload|clusters[c].insecure-skip-tls-verify"},
		},
		{
			name:   "exec with a relative command needs local files",
			policy: trust.Policy{AllowExec: true},
			give: `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: ./get-token, apiVersion: client.authentication.k8s.io/v1}}}]
`,
			want: got{Name: "x", Default: true, Err: "upload|users[u].exec.command"},
		},
		{
			name:   "exec from PATH, allowed",
			policy: trust.Policy{AllowExec: true},
			give: `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}}}]
`,
			want: got{Name: "x", Default: true, Host: "https://c.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusters, err := kubeconfig.Parse([]byte(tt.give), "upload", kubeconfig.WithTrustPolicy(tt.policy))
			require.NoError(t, err)
			assert.Equal(t, []got{tt.want}, summarize(t, clusters))
			if tt.want.Err != "" {
				assert.ErrorIs(t, clusters[0].Err, trust.ErrRefused)
			}
			assertNoSecret(t, clusters, nil)
		})
	}
}

func TestRefusalNamesTheFileOfTheEntry(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	writeFile(t, first, `
current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
`)
	writeFile(t, second, `
clusters: [{name: c, cluster: {server: "https://c.example"}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]
`)
	src, err := kubeconfig.New(env(map[string]string{"KUBECONFIG": first + string(os.PathListSeparator) + second}),
		kubeconfig.WithTrustPolicy(trust.Untrusted))
	require.NoError(t, err)
	trusttest.RequireRefused(t, list(t, src)[0].Err, second, "users[u].exec")
}

const eksContext = "arn:aws:eks:us-east-1:123456789012:cluster/prod"

func TestNames(t *testing.T) {
	give := fmt.Sprintf(`
current-context: %[1]q
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts:
- {name: %[1]q, context: {cluster: c, user: u}}
- {name: "gke_proj_europe-west1_dev", context: {cluster: c, user: u}}
- {name: "my cluster", context: {cluster: c, user: u}}
- {name: "my/cluster", context: {cluster: c, user: u}}
users: [{name: u, user: {token: tok-s3cr3t}}]
`, eksContext)

	t.Run("invalid names are errors at their context", func(t *testing.T) {
		clusters, err := kubeconfig.Parse([]byte(give), "upload")
		require.NoError(t, err)
		assert.Equal(t, []got{
			{Name: eksContext, Default: true, Err: "upload|contexts[" + eksContext + "].name"},
			{Name: "gke_proj_europe-west1_dev", Host: "https://c.example"},
			{Name: "my cluster", Err: "upload|contexts[my cluster].name"},
			{Name: "my/cluster", Err: "upload|contexts[my/cluster].name"},
		}, summarize(t, clusters))
		assert.ErrorContains(t, clusters[0].Err, "WithRename")
	})
	t.Run("SanitizeName makes them valid; a clash is an error", func(t *testing.T) {
		clusters, err := kubeconfig.Parse([]byte(give), "upload", kubeconfig.WithRename(kubeconfig.SanitizeName))
		require.NoError(t, err)
		assert.Equal(t, []got{
			{Name: "arn:aws:eks:us-east-1:123456789012:cluster-prod", Host: "https://c.example", Default: true},
			{Name: "gke_proj_europe-west1_dev", Host: "https://c.example"},
			{Name: "my-cluster", Err: "upload|contexts[my cluster].name"},
		}, summarize(t, clusters))
		assert.ErrorContains(t, clusters[2].Err, `cluster "my-cluster" is also defined by field contexts[my/cluster].name`)
	})
	t.Run("WithDefault takes the new name", func(t *testing.T) {
		clusters, err := kubeconfig.Parse([]byte(give), "upload",
			kubeconfig.WithRename(func(c string) string { return "eks-" + c[strings.LastIndex(c, "/")+1:] }),
			kubeconfig.WithDefault("eks-cluster"))
		require.NoError(t, err)
		assert.Equal(t, []got{
			{Name: "eks-cluster", Host: "https://c.example", Default: true},
			{Name: "eks-gke_proj_europe-west1_dev", Host: "https://c.example"},
			{Name: "eks-my cluster", Err: "upload|contexts[my cluster].name"},
			{Name: "eks-prod", Host: "https://c.example"},
		}, summarize(t, clusters))
	})
	t.Run("a Syncer serves the renamed clusters", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, give)
		src, err := kubeconfig.New(kubeconfig.WithPath(path), kubeconfig.WithRename(kubeconfig.SanitizeName))
		require.NoError(t, err)
		reg := runSyncer(t, src)
		assert.Equal(t, []string{"arn:aws:eks:us-east-1:123456789012:cluster-prod", "gke_proj_europe-west1_dev", "my-cluster"}, reg.Snapshot().Names())
		h, err := reg.Default()
		require.NoError(t, err)
		assert.Equal(t, "https://c.example", h)
	})
	t.Run("a Dir renames too", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "eks"), give)
		d, err := kubeconfig.NewDir(dir, kubeconfig.WithRename(kubeconfig.SanitizeName))
		require.NoError(t, err)
		assert.Equal(t, []string{"arn:aws:eks:us-east-1:123456789012:cluster-prod", "gke_proj_europe-west1_dev", "my-cluster"},
			names(list(t, d)))
	})
}

func TestSanitizeName(t *testing.T) {
	tests := []struct{ give, want string }{
		{"prod", "prod"},
		{eksContext, "arn:aws:eks:us-east-1:123456789012:cluster-prod"},
		{"kind-kind", "kind-kind"},
		{"user@cluster", "user@cluster"},
		{"my cluster", "my-cluster"},
		{"  padded/ ", "padded"},
		{"prod.example.com:6443/", "prod.example.com:6443"},
		{"café", "caf"},
		{"集群", ""},
		{"---", ""},
		{"", ""},
		{strings.Repeat("a", 300), strings.Repeat("a", 253)},
		{strings.Repeat("a", 252) + "/b", strings.Repeat("a", 252)},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, kubeconfig.SanitizeName(tt.give), "SanitizeName(%q)", tt.give)
	}
}

// FuzzSanitizeName checks that SanitizeName returns a valid name or "",
// keeps valid names, and is idempotent.
func FuzzSanitizeName(f *testing.F) {
	for _, s := range []string{eksContext, "my cluster", "", "-a-", "é/é", strings.Repeat("x/", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := kubeconfig.SanitizeName(name)
		if got != "" {
			if err := clusterregistry.ValidateName(got); err != nil {
				t.Fatalf("SanitizeName(%q) = %q, not valid: %v", name, got, err)
			}
		}
		if clusterregistry.ValidateName(name) == nil && got != name {
			t.Fatalf("SanitizeName changed the valid name %q to %q", name, got)
		}
		if again := kubeconfig.SanitizeName(got); again != got {
			t.Fatalf("SanitizeName(%q) = %q, but SanitizeName(%q) = %q", name, got, got, again)
		}
	})
}

func TestLimits(t *testing.T) {
	three := kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example"}, ctxSpec{"c", "https://c.example"})

	t.Run("Parse: too big", func(t *testing.T) {
		_, err := kubeconfig.Parse([]byte(three), "upload", kubeconfig.WithMaxSize(100))
		var fe *clusterregistry.FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, "upload", fe.Location)
		assert.Equal(t, "kubeconfig", fe.Field)
		assert.ErrorContains(t, err, "more than the limit of 100 bytes (WithMaxSize)")
	})
	t.Run("Parse: too many contexts", func(t *testing.T) {
		_, err := kubeconfig.Parse([]byte(three), "upload", kubeconfig.WithMaxClusters(2))
		var fe *clusterregistry.FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, "contexts", fe.Field)
		assert.ErrorContains(t, err, "more than the limit of 2 clusters (WithMaxClusters)")
		clusters, err := kubeconfig.Parse([]byte(three), "upload", kubeconfig.WithMaxClusters(3))
		require.NoError(t, err)
		assert.Len(t, clusters, 3)
	})
	t.Run("Parse: invalid limits", func(t *testing.T) {
		_, err := kubeconfig.Parse([]byte(three), "upload", kubeconfig.WithMaxSize(0), kubeconfig.WithMaxClusters(-1))
		assert.ErrorContains(t, err, "max size must be at least 1")
		assert.ErrorContains(t, err, "max clusters must be at least 1")
	})
	t.Run("New and NewDir: invalid limits", func(t *testing.T) {
		_, err := kubeconfig.New(kubeconfig.WithPath("x"), kubeconfig.WithMaxSize(0))
		assert.ErrorContains(t, err, "max size must be at least 1")
		_, err = kubeconfig.NewDir(t.TempDir(), kubeconfig.WithMaxClusters(0))
		assert.ErrorContains(t, err, "max clusters must be at least 1")
	})
	t.Run("Source: a file too big is not read", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, three)
		src, err := kubeconfig.New(kubeconfig.WithPath(path), kubeconfig.WithMaxSize(100))
		require.NoError(t, err)
		_, err = src.List(context.Background())
		var fe *clusterregistry.FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, path, fe.Location)
		assert.ErrorContains(t, err, "more than the limit of 100 bytes (WithMaxSize)")
	})
	t.Run("Source: a file that grows too big keeps its last good content", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}))
		src, err := kubeconfig.New(kubeconfig.WithPath(path), kubeconfig.WithMaxSize(int64(len(three)-1)), kubeconfig.WithSettle(0))
		require.NoError(t, err)
		assert.Equal(t, []got{{Name: "a", Host: "https://a.example", Default: true}}, summarize(t, list(t, src)))
		writeFile(t, path, three)
		assert.Equal(t, []got{{Name: "a", Default: true, Err: path + "|file"}}, summarize(t, list(t, src)))
	})
	t.Run("Source: too many contexts", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, three)
		src, err := kubeconfig.New(kubeconfig.WithPath(path), kubeconfig.WithMaxClusters(2))
		require.NoError(t, err)
		_, err = src.List(context.Background())
		assert.ErrorContains(t, err, "3 contexts: more than the limit of 2 clusters (WithMaxClusters)")
	})
	t.Run("Dir: too many contexts, too many files", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "one"), three)
		d, err := kubeconfig.NewDir(dir, kubeconfig.WithMaxClusters(2))
		require.NoError(t, err)
		_, err = d.List(context.Background())
		assert.ErrorContains(t, err, "3 contexts: more than the limit of 2 clusters")

		for _, n := range []string{"two", "three"} {
			writeFile(t, filepath.Join(dir, n), "")
		}
		_, err = d.List(context.Background())
		assert.ErrorContains(t, err, "3 files: more than the limit of 2 clusters")
	})
	t.Run("Dir: a named pipe is not read", func(t *testing.T) {
		wire := trusttest.NewTripwire(t)
		d, err := kubeconfig.NewDir(filepath.Dir(wire.Path))
		require.NoError(t, err)
		clusters := list(t, d)
		require.Len(t, clusters, 1)
		assert.Equal(t, filepath.Base(wire.Path), clusters[0].Name, "an entry named after the file")
		assert.ErrorContains(t, clusters[0].Err, "not a regular file")
		assert.False(t, wire.Stop())
	})
}
