package sqltest

import (
	"context"
	"database/sql"
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

// The memo's own counts (decodes, size, hits) are checked next to the code,
// in package sqlsource's memo_test.go; here the same listings run against a
// real SQLite.

func list(t *testing.T, src *sqlsource.Source) []clusterregistry.Cluster {
	t.Helper()
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	return clusters
}

func TestListDecodesOnlyWhatChanged(t *testing.T) {
	db := openDB(t)
	for i := range 10 {
		insert(t, db, fmt.Sprintf("c%d", i), kubeconfig(fmt.Sprintf("https://c%d.example", i)), false, true, nil)
	}
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	require.Len(t, list(t, src), 10)
	list(t, src)

	_, err = db.Exec(`UPDATE clusters SET kubeconfig = ? WHERE name = 'c3'`, kubeconfig("https://c3-new.example"))
	require.NoError(t, err)
	clusters := list(t, src)
	assert.Equal(t, got{Name: "c3", Host: "https://c3-new.example", Revision: "1"}, summarize(t, clusters)[3], "the change is picked up")
}

func TestRemovedRowsLeaveTheMemo(t *testing.T) {
	db := openDB(t)
	for i := range 10 {
		insert(t, db, fmt.Sprintf("c%d", i), kubeconfig(fmt.Sprintf("https://c%d.example", i)), false, true, nil)
	}
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	list(t, src)

	_, err = db.Exec(`DELETE FROM clusters WHERE name IN ('c1', 'c2', 'c3')`)
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE clusters SET enabled = 0 WHERE name = 'c4'`)
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE clusters SET kubeconfig = ? WHERE name = 'c5'`, kubeconfig("https://c5-new.example"))
	require.NoError(t, err)
	assert.Len(t, list(t, src), 6)

	// A List that fails keeps the memo of the last one that did not.
	_, err = db.Exec(`DROP TABLE clusters`)
	require.NoError(t, err)
	_, err = src.List(context.Background())
	require.Error(t, err)
}

// TestErrorFollowsItsRow inserts a row above a broken one and a good one:
// the broken row's error names its new row, the good row's cluster, which
// has no row in it, is not decoded again.
func TestErrorFollowsItsRow(t *testing.T) {
	db := openDB(t)
	insert(t, db, "good", kubeconfig("https://good.example"), false, true, nil) // row 1
	insert(t, db, "bad", kubeconfig(""), false, true, nil)                      // row 2
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "bad", Revision: "1", Err: "row 2|kubeconfig.clusters[main].server"},
		{Name: "good", Host: "https://good.example", Revision: "1"},
	}, summarize(t, list(t, src)))

	_, err = db.Exec(`INSERT INTO clusters (id, name, kubeconfig) VALUES (0, 'first', ?)`, kubeconfig("https://first.example"))
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "bad", Revision: "1", Err: "row 3|kubeconfig.clusters[main].server"},
		{Name: "first", Host: "https://first.example", Revision: "1"},
		{Name: "good", Host: "https://good.example", Revision: "1"},
	}, summarize(t, list(t, src)))
}

func TestListedConfigCanBeChanged(t *testing.T) {
	db := openDB(t)
	insert(t, db, "a", kubeconfig("https://a.example"), false, true, nil)
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	for range 2 { // the first List keeps the config, the second finds it
		c := list(t, src)[0]
		require.Equal(t, "https://a.example", c.Config.Host)
		require.Equal(t, "tok-s3cr3t", c.Config.BearerToken)
		c.Config.Host = "https://changed.example"
		c.Config.BearerToken = "changed"
	}
	c := list(t, src)[0]
	assert.Equal(t, "https://a.example", c.Config.Host)
	assert.Equal(t, "tok-s3cr3t", c.Config.BearerToken)
}

// TestCertificateFileIsReadOnEveryList: a trusted row may name a file whose
// content changes while the row stays the same.
func TestCertificateFileIsReadOnEveryList(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("ca-one"), 0o600))
	db := openDB(t)
	insert(t, db, "a", fmt.Sprintf(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: %q}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`, ca), false, true, nil)
	src, err := sqlsource.New(db, sqlsource.WithQuery(query), sqlsource.WithTrustPolicy(trust.Trusted))
	require.NoError(t, err)
	assert.Equal(t, []byte("ca-one"), list(t, src)[0].Config.CAData)
	require.NoError(t, os.WriteFile(ca, []byte("ca-two"), 0o600))
	assert.Equal(t, []byte("ca-two"), list(t, src)[0].Config.CAData)
}

// TestConcurrentListsWhileRowsChange overlaps Lists, and the passes of their
// memo, with changes of the rows, under -race.
func TestConcurrentListsWhileRowsChange(t *testing.T) {
	// Readers and a writer at once: SQLite waits for its lock rather than
	// failing at once with SQLITE_BUSY.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "clusters.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	_, err = db.Exec(schema)
	require.NoError(t, err)
	for i := range 20 {
		insert(t, db, fmt.Sprintf("c%02d", i), kubeconfig(fmt.Sprintf("https://c%d.example", i)), false, true, nil)
	}
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
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
		for i := range 10 {
			_, err := db.Exec(`UPDATE clusters SET kubeconfig = ? WHERE name = 'c00'`, kubeconfig(fmt.Sprintf("https://c0-%d.example", i)))
			assert.NoError(t, err)
		}
	})
	wg.Wait()
	clusters := list(t, src)
	assert.Equal(t, "https://c0-9.example", clusters[0].Config.Host)
	assert.Equal(t, "https://c1.example", clusters[1].Config.Host)
}
