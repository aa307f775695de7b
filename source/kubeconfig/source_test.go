package kubeconfig_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

func env(vars map[string]string) kubeconfig.Option {
	return kubeconfig.WithGetenv(func(k string) string { return vars[k] })
}

func TestLoadingRules(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".kube"), 0o700))
	homeFile := filepath.Join(home, ".kube", "config")
	writeFile(t, homeFile, kubeconfigYAML("h", ctxSpec{"h", "https://home.example"}))

	first := filepath.Join(dir, "first")
	writeFile(t, first, kubeconfigYAML("", ctxSpec{"a", "https://a1.example"}))
	second := filepath.Join(dir, "second")
	writeFile(t, second, kubeconfigYAML("b", ctxSpec{"a", "https://a2.example"}, ctxSpec{"b", "https://b.example"}))
	missing := filepath.Join(dir, "missing")
	kubeconfigList := first + string(os.PathListSeparator) + missing + string(os.PathListSeparator) + second

	tests := []struct {
		name      string
		give      []kubeconfig.Option
		wantPaths []string
		want      []got
	}{
		{
			name:      "home file when KUBECONFIG is unset",
			give:      []kubeconfig.Option{env(map[string]string{"HOME": home})},
			wantPaths: []string{homeFile},
			want:      []got{{Name: "h", Host: "https://home.example", Default: true}},
		},
		{
			name:      "KUBECONFIG list merged, first definition and current-context win, missing skipped",
			give:      []kubeconfig.Option{env(map[string]string{"HOME": home, "KUBECONFIG": kubeconfigList})},
			wantPaths: []string{first, missing, second},
			want: []got{
				{Name: "a", Host: "https://a1.example"},
				{Name: "b", Host: "https://b.example", Default: true},
			},
		},
		{
			name:      "explicit path beats KUBECONFIG",
			give:      []kubeconfig.Option{env(map[string]string{"KUBECONFIG": kubeconfigList}), kubeconfig.WithPath(second)},
			wantPaths: []string{second},
			want: []got{
				{Name: "a", Host: "https://a2.example"},
				{Name: "b", Host: "https://b.example", Default: true},
			},
		},
		{
			name:      "WithDefault overrides current-context",
			give:      []kubeconfig.Option{kubeconfig.WithPath(second), kubeconfig.WithDefault("a")},
			wantPaths: []string{second},
			want: []got{
				{Name: "a", Host: "https://a2.example", Default: true},
				{Name: "b", Host: "https://b.example"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := kubeconfig.New(tt.give...)
			require.NoError(t, err)
			assert.Equal(t, tt.wantPaths, src.Paths())
			assert.Equal(t, tt.want, summarize(t, list(t, src)))
		})
	}
}

func TestExplicitPathMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	src, err := kubeconfig.New(kubeconfig.WithPath(path))
	require.NoError(t, err)
	_, err = src.List(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, path, fe.Location)
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := kubeconfig.New(kubeconfig.WithPollInterval(0), kubeconfig.WithSettle(-1), kubeconfig.WithClock(nil))
	require.Error(t, err)
	assert.ErrorContains(t, err, "poll interval")
	assert.ErrorContains(t, err, "settle")
	assert.ErrorContains(t, err, "clock")

	_, err = kubeconfig.New(env(nil))
	assert.ErrorContains(t, err, "no home directory")
}

func TestListHonoursContext(t *testing.T) {
	src, err := kubeconfig.New(kubeconfig.WithPath(filepath.Join(t.TempDir(), "x")))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = src.List(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestRelativePathsResolveAgainstTheirFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o700))
	writeFile(t, filepath.Join(sub, "ca.crt"), "ca-from-sub")
	writeFile(t, filepath.Join(sub, "client.crt"), "cert-from-sub")
	writeFile(t, filepath.Join(sub, "client.key"), "key-from-sub")
	writeFile(t, filepath.Join(sub, "token"), "token-from-sub")
	path := filepath.Join(sub, "config")
	writeFile(t, path, `
clusters:
- {name: c, cluster: {server: "https://c.example", certificate-authority: ca.crt}}
contexts:
- {name: cert, context: {cluster: c, user: cert}}
- {name: token, context: {cluster: c, user: token}}
users:
- {name: cert, user: {client-certificate: client.crt, client-key: ./client.key}}
- {name: token, user: {tokenFile: token}}
`)
	// The working directory must not matter.
	t.Chdir(dir)
	src, err := kubeconfig.New(env(map[string]string{"KUBECONFIG": path}))
	require.NoError(t, err)
	clusters := list(t, src)
	require.Len(t, clusters, 2)
	cert, token := clusters[0].Config, clusters[1].Config
	require.NoError(t, clusters[0].Err)
	require.NoError(t, clusters[1].Err)

	assert.Equal(t, []byte("ca-from-sub"), cert.CAData)
	assert.Empty(t, cert.CAFile, "inlined: client-go reloads no file")
	assert.Equal(t, []byte("cert-from-sub"), cert.CertData)
	assert.Equal(t, []byte("key-from-sub"), cert.KeyData)
	assert.Empty(t, cert.CertFile)
	assert.Empty(t, cert.KeyFile)
	assert.Equal(t, filepath.Join(sub, "token"), token.BearerTokenFile)
}

func newFileSource(t *testing.T, path string, opts ...kubeconfig.Option) (*kubeconfig.Source, *fakeclock.FakeClock) {
	t.Helper()
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	opts = append([]kubeconfig.Option{
		kubeconfig.WithPath(path),
		kubeconfig.WithClock(clk),
		kubeconfig.WithPollInterval(interval),
		kubeconfig.WithSettle(settle),
	}, opts...)
	src, err := kubeconfig.New(opts...)
	require.NoError(t, err)
	return src, clk
}

func TestWatchReportsAnEditOnceSettled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}))
	src, clk := newFileSource(t, path)
	require.Equal(t, []got{{Name: "a", Host: "https://a.example", Default: true}}, summarize(t, list(t, src)))

	w := startWatch(t, src, clk)
	w.poll()
	assert.Zero(t, w.changes.Load(), "nothing changed")

	writeFile(t, path, kubeconfigYAML("a", ctxSpec{"a", "https://a2.example"}, ctxSpec{"b", "https://b.example"}))
	w.poll()
	assert.Zero(t, w.changes.Load(), "a new content waits to settle")
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load(), "settled content is reported")
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a2.example", Default: true},
		{Name: "b", Host: "https://b.example"},
	}, summarize(t, list(t, src)))

	w.poll()
	assert.EqualValues(t, 1, w.changes.Load(), "reported once")
}

func TestWatchReportsAChangeThatAListSawFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	src, clk := newFileSource(t, path, kubeconfig.WithSettle(0))
	list(t, src)
	w := startWatch(t, src, clk)

	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a2.example"}))
	assert.Equal(t, "https://a2.example", list(t, src)[0].Config.Host)
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load(), "the watch reports what another List took in")
}

func TestHalfWrittenFileIsNotTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	full := kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example"}, ctxSpec{"c", "https://c.example"})
	writeFile(t, path, full)
	src, clk := newFileSource(t, path)
	want := summarize(t, list(t, src))
	require.Len(t, want, 3)

	// A prefix that is a valid kubeconfig with fewer contexts, as a reader
	// may see halfway through a non-atomic write.
	prefix := kubeconfigYAML("a", ctxSpec{"a", "https://a.example"})
	writeFile(t, path, prefix)
	assert.Equal(t, want, summarize(t, list(t, src)), "seen once: not yet used")
	writeFile(t, path, full)
	clk.Step(settle)
	assert.Equal(t, want, summarize(t, list(t, src)))

	// The same prefix kept for the settle time is a real edit.
	writeFile(t, path, prefix)
	list(t, src)
	clk.Step(settle)
	assert.Equal(t, []got{{Name: "a", Host: "https://a.example", Default: true}}, summarize(t, list(t, src)))
}

func TestBrokenFileKeepsItsLastGoodContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	other := filepath.Join(dir, "other")
	writeFile(t, path, kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example"}))
	writeFile(t, other, kubeconfigYAML("", ctxSpec{"o", "https://o.example"}))
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	src, err := kubeconfig.New(env(map[string]string{"KUBECONFIG": path + string(os.PathListSeparator) + other}),
		kubeconfig.WithClock(clk), kubeconfig.WithSettle(settle))
	require.NoError(t, err)
	good := list(t, src)

	tests := []struct {
		name      string
		give      string
		wantField string
	}{
		{name: "does not parse", give: "clusters: [\n  token: tok-s3cr3t", wantField: "kubeconfig"},
		{name: "empty", give: "", wantField: "kubeconfig"},
		{name: "not a kubeconfig", give: "users: 42\n", wantField: "kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, path, tt.give)
			list(t, src)
			clk.Step(settle)
			clusters := list(t, src)
			assertNoSecret(t, clusters, nil)
			require.Equal(t, []string{"a", "b", "o"}, names(clusters), "no cluster lost")
			for i, c := range clusters[:2] {
				var fe *clusterregistry.FieldError
				require.ErrorAs(t, c.Err, &fe, c.Name)
				assert.Equal(t, path, fe.Location)
				assert.Equal(t, tt.wantField, fe.Field)
				assert.Contains(t, fe.Error(), "keeping the file's last good content")
				assert.Equal(t, good[i].Config.Host, c.Config.Host, "the last good config comes along")
				assert.Equal(t, good[i].Default, c.Default)
			}
			assert.NoError(t, clusters[2].Err, "the other file carries on")

			// Fixed: the error goes.
			writeFile(t, path, kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example"}))
			list(t, src)
			clk.Step(settle)
			assert.Equal(t, summarize(t, good), summarize(t, list(t, src)))
		})
	}
}

func TestFileNeverGoodFailsList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	writeFile(t, path, "clusters: [\n")
	src, err := kubeconfig.New(kubeconfig.WithPath(path))
	require.NoError(t, err)
	_, err = src.List(context.Background())
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, path, fe.Location)

	// An empty file is an empty kubeconfig, as for client-go.
	writeFile(t, path, "")
	src, err = kubeconfig.New(kubeconfig.WithPath(path))
	require.NoError(t, err)
	assert.Empty(t, list(t, src))
}

func TestDeletedFileGoesOnceSettled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	src, err := kubeconfig.New(env(map[string]string{"KUBECONFIG": path}), kubeconfig.WithClock(clk))
	require.NoError(t, err)
	require.Len(t, list(t, src), 1)

	require.NoError(t, os.Remove(path))
	assert.Len(t, list(t, src), 1, "a delete-and-recreate must not drop the clusters")
	clk.Step(kubeconfig.DefaultSettle)
	assert.Empty(t, list(t, src))
}

func TestCertificateFileChangeIsReported(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	writeFile(t, ca, "ca-one")
	path := filepath.Join(dir, "config")
	writeFile(t, path, `
clusters:
- {name: c, cluster: {server: "https://c.example", certificate-authority: ca.crt}}
contexts:
- {name: x, context: {cluster: c, user: u}}
users:
- {name: u, user: {token: tok-s3cr3t}}
`)
	src, clk := newFileSource(t, path)
	assert.Equal(t, []byte("ca-one"), list(t, src)[0].Config.CAData)
	w := startWatch(t, src, clk)
	w.poll()
	require.Zero(t, w.changes.Load())

	writeFile(t, ca, "ca-two")
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load())
	assert.Equal(t, []byte("ca-two"), list(t, src)[0].Config.CAData)
}

func TestSameSizeRewriteIsSeen(t *testing.T) {
	// Two contents of the same size written within one timestamp tick: the
	// content check, not size and time, must tell them apart.
	path := filepath.Join(t.TempDir(), "config")
	src, clk := newFileSource(t, path, kubeconfig.WithSettle(0))
	mtime := time.Now().Truncate(time.Second)
	for i, host := range []string{"https://a.example", "https://b.example", "https://c.example"} {
		writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", host}))
		require.NoError(t, os.Chtimes(path, mtime, mtime))
		clk.Step(time.Second)
		assert.Equal(t, host, list(t, src)[0].Config.Host, "write %d", i)
	}
}

func TestErrorsOfBadEntriesNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, kubeconfigYAML("", ctxSpec{"a", `""`}, ctxSpec{"b", "https://b.example"}))
	src, _ := newFileSource(t, path)
	assert.Equal(t, []got{
		{Name: "a", Err: path + "|clusters[a].server"},
		{Name: "b", Host: "https://b.example"},
	}, summarize(t, list(t, src)))
	var fe *clusterregistry.FieldError
	require.True(t, errors.As(list(t, src)[0].Err, &fe))
	assert.EqualError(t, fe, path+": field clusters[a].server: must not be empty")
}
