package sqlsource_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
	"github.com/clusterregistry/clusterregistry/trust"
)

// The memo's tests live next to the code, over the fake driver of
// fakedb_test.go, so that they reach the memo through export_test.go; the
// sqltest module checks the same listings against a real SQLite.

const query = "SELECT name, kubeconfig FROM clusters"

func newMemoSource(t *testing.T, tb *table, opts ...sqlsource.Option) *sqlsource.Source {
	t.Helper()
	src, err := sqlsource.New(tableDB(t, tb), append([]sqlsource.Option{sqlsource.WithQuery(query)}, opts...)...)
	require.NoError(t, err)
	return src
}

func decodes(src *sqlsource.Source) int64 {
	_, misses := sqlsource.MemoOf(src).Stats()
	return misses
}

func listOK(t *testing.T, src *sqlsource.Source) []clusterregistry.Cluster {
	t.Helper()
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	return clusters
}

func rowsOf(n int, server func(i int) string) [][2]string {
	var out [][2]string
	for i := range n {
		out = append(out, [2]string{fmt.Sprintf("c%d", i), kubeconfigAt(server(i))})
	}
	return out
}

func TestMemoDecodesOnlyWhatChanged(t *testing.T) {
	tb := &table{}
	tb.set(rowsOf(10, func(i int) string { return fmt.Sprintf("https://c%d.example", i) })...)
	src := newMemoSource(t, tb)
	require.Len(t, listOK(t, src), 10)
	require.EqualValues(t, 10, decodes(src))

	listOK(t, src)
	assert.EqualValues(t, 10, decodes(src), "nothing changed, nothing decoded")

	tb.set(rowsOf(10, func(i int) string {
		if i == 3 {
			return "https://c3-new.example"
		}
		return fmt.Sprintf("https://c%d.example", i)
	})...)
	clusters := listOK(t, src)
	assert.EqualValues(t, 11, decodes(src), "one row changed, one kubeconfig decoded")
	assert.Equal(t, "https://c3-new.example", clusters[3].Config.Host)
	assert.Equal(t, 10, sqlsource.MemoOf(src).Len())

	tb.set(rowsOf(6, func(i int) string { return fmt.Sprintf("https://c%d.example", i) })...)
	listOK(t, src)
	assert.Equal(t, 6, sqlsource.MemoOf(src).Len(), "the memo holds what the listing holds")

	tb.fail(errors.New("no such table"))
	_, err := src.List(context.Background())
	require.Error(t, err)
	assert.Equal(t, 6, sqlsource.MemoOf(src).Len(), "a failed List keeps the memo of the last good one")
}

func TestMemoKeepsNoErrorAndNoLocalFile(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("ca-one"), 0o600))
	tb := &table{}
	tb.set([2]string{"bad", kubeconfigAt("")}, [2]string{"file", fmt.Sprintf(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: %q}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`, ca)})
	src := newMemoSource(t, tb, sqlsource.WithTrustPolicy(trust.Trusted))
	clusters := listOK(t, src)
	require.Error(t, clusters[0].Err)
	assert.Equal(t, []byte("ca-one"), clusters[1].Config.CAData)
	assert.Zero(t, sqlsource.MemoOf(src).Len(), "errors and results that read files are not kept")

	require.NoError(t, os.WriteFile(ca, []byte("ca-two"), 0o600))
	assert.Equal(t, []byte("ca-two"), listOK(t, src)[1].Config.CAData)
}

func TestMemoHandsOutCopies(t *testing.T) {
	tb := &table{}
	tb.set([2]string{"a", kubeconfigAt("https://a.example")})
	src := newMemoSource(t, tb)
	for range 2 { // the first List keeps the config, the second finds it
		c := listOK(t, src)[0]
		require.Equal(t, "https://a.example", c.Config.Host)
		c.Config.Host = "https://changed.example"
	}
	assert.Equal(t, "https://a.example", listOK(t, src)[0].Config.Host)
	hits, _ := sqlsource.MemoOf(src).Stats()
	assert.EqualValues(t, 2, hits)
}

// TestMemoUnderConcurrentLists overlaps Lists, and the passes of their memo,
// with changes of the rows, under -race.
func TestMemoUnderConcurrentLists(t *testing.T) {
	tb := &table{}
	server := func(i int) string { return fmt.Sprintf("https://c%d.example", i) }
	tb.set(rowsOf(20, server)...)
	src := newMemoSource(t, tb)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				clusters, err := src.List(context.Background())
				if assert.NoError(t, err) && assert.Len(t, clusters, 20) {
					clusters[0].Config.Host = "changed" // a caller's own copy
				}
			}
		})
	}
	wg.Go(func() {
		for v := range 10 {
			tb.set(rowsOf(20, func(i int) string {
				if i == 0 {
					return fmt.Sprintf("https://c0-%d.example", v)
				}
				return server(i)
			})...)
		}
	})
	wg.Wait()
	clusters := listOK(t, src)
	assert.Equal(t, "https://c0-9.example", clusters[0].Config.Host)
	assert.Equal(t, 20, sqlsource.MemoOf(src).Len())
}
