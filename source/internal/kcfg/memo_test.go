package kcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/trust"
)

// oneCluster is a kubeconfig with one context whose cluster is at server.
func oneCluster(server string) []byte {
	return fmt.Appendf(nil, `
current-context: x
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: Y2EtZGF0YQ==}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`, server)
}

func rowOpts(row int) Options {
	return Options{Location: fmt.Sprintf("row %d", row), Field: "kubeconfig", Policy: trust.Untrusted, MaxSize: 1 << 20}
}

func where(t *testing.T, err error) string {
	t.Helper()
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, err, &fe)
	return fe.Location + "|" + fe.Field
}

// stats returns m's hits and misses as one value, for assert.Equal.
func stats(m *Memo) [2]int64 {
	h, mi := m.Stats()
	return [2]int64{h, mi}
}

func TestPassKeepsSuccessesAcrossLocations(t *testing.T) {
	var m Memo
	data := oneCluster("https://a.example")

	p := m.Pass()
	first := p.One(data, rowOpts(1))
	p.Done()
	require.NoError(t, first.Err)
	assert.Equal(t, 1, m.Len())
	assert.Equal(t, [2]int64{0, 1}, stats(&m))

	// The row moved: a success has no location in it, so it still hits.
	p = m.Pass()
	second := p.One(data, rowOpts(7))
	p.Done()
	require.NoError(t, second.Err)
	assert.Equal(t, [2]int64{1, 1}, stats(&m))
	assert.Equal(t, first, second)
	assert.NotSame(t, first.Config, second.Config, "each caller gets its own config")

	// Another kubeconfig is another key.
	p = m.Pass()
	other := p.One(oneCluster("https://b.example"), rowOpts(1))
	p.Done()
	assert.Equal(t, "https://b.example", other.Config.Host)
	assert.Equal(t, [2]int64{1, 2}, stats(&m))
}

func TestPassHitCanBeChanged(t *testing.T) {
	var m Memo
	data := oneCluster("https://a.example")
	p := m.Pass()
	want := p.One(data, rowOpts(1))
	require.NoError(t, want.Err)
	mine := p.One(data, rowOpts(2)) // a hit within the pass
	p.Done()

	for _, c := range []clusterregistry.Cluster{want, mine} {
		c.Config.Host = "https://changed.example"
		c.Config.BearerToken = "changed"
		c.Config.CAData[0] = 'X'
		c.Config.Impersonate.Groups = append(c.Config.Impersonate.Groups, "system:masters")
	}
	p = m.Pass()
	got := p.One(data, rowOpts(1))
	p.Done()
	require.NoError(t, got.Err)
	assert.Equal(t, "https://a.example", got.Config.Host)
	assert.Equal(t, "tok-s3cr3t", got.Config.BearerToken)
	assert.Equal(t, []byte("ca-data"), got.Config.CAData)
	assert.Empty(t, got.Config.Impersonate.Groups)
	assert.Equal(t, [2]int64{2, 1}, stats(&m))
}

func TestPassDoesNotKeepErrors(t *testing.T) {
	tests := []struct {
		name      string
		give      []byte
		wantField string
	}{
		{name: "no server", give: oneCluster(""), wantField: "kubeconfig.clusters[c].server"},
		{name: "malformed", give: []byte("clusters: ["), wantField: "kubeconfig"},
		{name: "refused", give: []byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]
`), wantField: "kubeconfig.users[u].exec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Memo
			for row := 3; row <= 4; row++ {
				p := m.Pass()
				c := p.One(tt.give, rowOpts(row))
				p.Done()
				assert.Equal(t, fmt.Sprintf("row %d|%s", row, tt.wantField), where(t, c.Err), "the error follows its row")
				assert.Zero(t, m.Len())
			}
			assert.Equal(t, [2]int64{0, 2}, stats(&m))
		})
	}
}

func TestPassDropsWhatTheListingNoLongerHolds(t *testing.T) {
	var m Memo
	a, b := oneCluster("https://a.example"), oneCluster("https://b.example")
	p := m.Pass()
	p.One(a, rowOpts(1))
	p.One(b, rowOpts(2))
	p.One(b, rowOpts(3)) // the same bytes twice: one entry
	p.Done()
	assert.Equal(t, 2, m.Len())

	p = m.Pass()
	p.One(b, rowOpts(1))
	p.Done()
	assert.Equal(t, 1, m.Len())

	p = m.Pass()
	p.One(a, rowOpts(1))
	assert.Equal(t, 1, m.Len(), "an unfinished pass changes nothing")
	p.Done()
	// a: miss, b: miss, b: hit, b: hit, a: miss (dropped before).
	assert.Equal(t, [2]int64{2, 3}, stats(&m))
}

func TestUnfinishedPassKeepsTheMemo(t *testing.T) {
	var m Memo
	data := oneCluster("https://a.example")
	p := m.Pass()
	p.One(data, rowOpts(1))
	p.Done()

	m.Pass() // a List that fails after its query: no Done
	p = m.Pass()
	p.One(data, rowOpts(1))
	p.Done()
	assert.Equal(t, [2]int64{1, 1}, stats(&m))
}

// TestPassDoesNotKeepWhatReadsFiles: a trusted kubeconfig may name files
// whose content changes while its bytes stay the same.
func TestPassDoesNotKeepWhatReadsFiles(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(ca, []byte("ca-one"), 0o600))
	require.NoError(t, os.WriteFile(token, []byte("tok-s3cr3t"), 0o600))
	opts := Options{Location: "hub/a", Field: "data[kubeconfig]", Policy: trust.Trusted}
	withCA := fmt.Appendf(nil, `
current-context: x
clusters: [{name: c, cluster: {server: "https://c", certificate-authority: %q}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: t}}]
`, ca)
	withToken := fmt.Appendf(nil, `
current-context: x
clusters: [{name: c, cluster: {server: "https://c"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {tokenFile: %q}}]
`, token)

	var m Memo
	p := m.Pass()
	c := p.One(withCA, opts)
	require.NoError(t, c.Err)
	assert.Equal(t, []byte("ca-one"), c.Config.CAData)
	require.NoError(t, p.One(withToken, opts).Err)
	p.Done()
	assert.Zero(t, m.Len())

	require.NoError(t, os.WriteFile(ca, []byte("ca-two"), 0o600))
	require.NoError(t, os.Remove(token))
	p = m.Pass()
	c = p.One(withCA, opts)
	require.NoError(t, c.Err)
	assert.Equal(t, []byte("ca-two"), c.Config.CAData, "a changed certificate file is seen")
	assert.Equal(t, "hub/a|data[kubeconfig].users[u].tokenFile", where(t, p.One(withToken, opts).Err))
	p.Done()
	assert.Equal(t, [2]int64{0, 4}, stats(&m))
}

func TestDisabledMemoKeepsNothing(t *testing.T) {
	var m Memo
	data := oneCluster("https://a.example")
	p := m.Pass()
	p.One(data, rowOpts(1))
	p.Done()
	m.Disable()
	for range 2 {
		p = m.Pass()
		require.NoError(t, p.One(data, rowOpts(1)).Err)
		p.Done()
	}
	assert.Zero(t, m.Len())
	assert.Equal(t, [2]int64{0, 3}, stats(&m))
}

func TestNilPassResolves(t *testing.T) {
	var p *Pass
	c := p.One(oneCluster("https://a.example"), rowOpts(1))
	require.NoError(t, c.Err)
	assert.Equal(t, "https://a.example", c.Config.Host)
	_, ok := p.Get(KeyOf([]byte("x")))
	assert.False(t, ok)
	p.Done()
}

func TestKeyOfSeparatesParts(t *testing.T) {
	assert.NotEqual(t, KeyOf([]byte("ab"), []byte("c")), KeyOf([]byte("a"), []byte("bc")))
	assert.NotEqual(t, KeyOf([]byte("a"), nil), KeyOf(nil, []byte("a")))
	assert.Equal(t, KeyOf([]byte("a"), []byte("b")), KeyOf([]byte("a"), []byte("b")))
}

// TestConcurrentPasses runs overlapping passes that change what they get,
// under -race: the kept configs, exec configs with cluster info included,
// are never written.
func TestConcurrentPasses(t *testing.T) {
	policy := trust.Untrusted
	policy.AllowExec = true
	opts := Options{Location: "row 1", Field: "kubeconfig", Policy: policy}
	var datas [][]byte
	for i := range 8 {
		datas = append(datas, fmt.Appendf(nil, `
current-context: x
clusters:
- name: c
  cluster:
    server: https://c%d.example
    certificate-authority-data: Y2EtZGF0YQ==
    extensions: [{name: client.authentication.k8s.io/exec, extension: {audience: a%d}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws, args: [token], apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}}}]
`, i, i))
	}
	var m Memo
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 20 {
				p := m.Pass()
				for i, data := range datas[(g+round)%2:] {
					c := p.One(data, opts)
					if !assert.NoError(t, c.Err) {
						return
					}
					assert.Equal(t, fmt.Sprintf("https://c%d.example", i+(g+round)%2), c.Config.Host)
					assert.NotNil(t, c.Config.ExecProvider.Config, "the cluster info reaches the exec config")
					c.Config.Host = "changed"
					c.Config.CAData[0] = 'X'
					c.Config.ExecProvider.Args[0] = "changed"
					c.Config.ExecProvider.Config = nil
				}
				p.Done()
			}
		})
	}
	wg.Wait()
	hits, _ := m.Stats()
	assert.Positive(t, hits)
}

func TestFileDefsResolvesOnce(t *testing.T) {
	f, err := Decode([]byte(`
current-context: a
clusters: [{name: c, cluster: {server: "https://c", certificate-authority-data: Y2EtZGF0YQ==}}]
contexts: [{name: a, context: {cluster: c, user: u}}, {name: b, context: {cluster: c, user: nobody}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`), Options{Location: "/etc/clusters/one", Policy: trust.Trusted})
	require.NoError(t, err)
	want := Merge(f).Defs()

	first := f.Defs()
	assert.Equal(t, want, first)
	// Mark what Defs keeps: the next call returns it, unresolved again.
	require.NotNil(t, f.defs.defs)
	f.defs.defs[1].Field = "marked"
	second := f.Defs()
	assert.Equal(t, "marked", second[1].Field, "resolved once")
	f.defs.defs[1].Field = want[1].Field

	first[0].Cluster.Config.Host = "changed"
	first[0].Cluster.Config.CAData[0] = 'X'
	assert.Equal(t, want, f.Defs(), "each call gets its own configs")
	assert.NotSame(t, first[0].Cluster.Config, second[0].Cluster.Config)

	stale := errors.New("stale")
	defs := f.WithStale(stale).Defs()
	assert.Equal(t, stale, defs[0].Cluster.Err)
	assert.NotNil(t, defs[0].Cluster.Config)
	assert.Equal(t, want, f.Defs(), "the stale copy does not change the File's")
}

func TestFileDefsReadsFilesEveryTime(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("ca-one"), 0o600))
	f, err := Decode([]byte(`
current-context: a
clusters: [{name: c, cluster: {server: "https://c", certificate-authority: ca.crt}}]
contexts: [{name: a, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`), Options{Location: filepath.Join(dir, "config"), Dir: dir, Policy: trust.Trusted})
	require.NoError(t, err)
	require.Equal(t, []byte("ca-one"), f.Defs()[0].Cluster.Config.CAData)
	require.NoError(t, os.WriteFile(ca, []byte("ca-two"), 0o600))
	assert.Equal(t, []byte("ca-two"), f.Defs()[0].Cluster.Config.CAData)
}
