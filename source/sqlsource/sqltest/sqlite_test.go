package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	fakeclock "k8s.io/utils/clock/testing"
	_ "modernc.org/sqlite"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	kcsource "github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
	"github.com/clusterregistry/clusterregistry/trust"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const schema = `
CREATE TABLE clusters (
	id         INTEGER PRIMARY KEY,
	name       TEXT,
	kubeconfig TEXT,
	is_default BOOLEAN,
	enabled    BOOLEAN,
	labels     TEXT,
	version    INTEGER NOT NULL DEFAULT 1
)`

// query reads the table with a revision column.
const query = `SELECT name, kubeconfig, is_default, enabled, labels, version AS revision FROM clusters ORDER BY id`

// kubeconfig is a kubeconfig with one context whose cluster is at server.
func kubeconfig(server string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Config
current-context: main
clusters: [{name: main, cluster: {server: %q}}]
contexts: [{name: main, context: {cluster: main, user: main}}]
users: [{name: main, user: {token: tok-s3cr3t}}]
`, server)
}

// openDB makes a SQLite database file with the clusters table. Its
// connections wait for one another's locks (busy_timeout) rather than fail
// with SQLITE_BUSY: a test writes while a Syncer's List or the source's
// change query reads on another connection of the pool.
func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "clusters.db")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	_, err = db.Exec(schema)
	require.NoError(t, err)
	return db
}

func insert(t *testing.T, db *sql.DB, name, kc string, isDefault, enabled any, labels any) {
	t.Helper()
	_, err := db.Exec(`INSERT INTO clusters (name, kubeconfig, is_default, enabled, labels) VALUES (?, ?, ?, ?, ?)`,
		name, kc, isDefault, enabled, labels)
	require.NoError(t, err)
}

type got struct {
	Name     string
	Host     string
	Default  bool
	Revision string
	Err      string // the FieldError's Location|Field
}

func summarize(t *testing.T, clusters []clusterregistry.Cluster) []got {
	t.Helper()
	out := make([]got, 0, len(clusters))
	for _, c := range clusters {
		g := got{Name: c.Name, Default: c.Default, Revision: c.Revision}
		if c.Err != nil {
			var fe *clusterregistry.FieldError
			require.True(t, errors.As(c.Err, &fe), "Err is %T: %v", c.Err, c.Err)
			g.Err = fe.Location + "|" + fe.Field
			assert.NotContains(t, c.Err.Error(), "s3cr3t", "an error quotes a credential")
			assert.NotContains(t, c.Err.Error(), "apiVersion", "an error quotes a kubeconfig")
		} else {
			require.NotNil(t, c.Config, c.Name)
			g.Host = c.Config.Host
		}
		out = append(out, g)
	}
	return out
}

func TestRows(t *testing.T) {
	db := openDB(t)
	insert(t, db, "prod", kubeconfig("https://prod.example"), true, true, `{"env": "prod"}`) // row 1
	insert(t, db, "off", kubeconfig("https://off.example"), false, false, nil)               // row 2: disabled
	insert(t, db, "stage", kubeconfig("https://stage.example"), nil, nil, nil)               // row 3: NULLs
	insert(t, db, "broken", "clusters: [", false, true, nil)                                 // row 4
	insert(t, db, "noserver", kubeconfig(""), 0, 1, nil)                                     // row 5
	insert(t, db, "", kubeconfig("https://anon.example"), false, true, nil)                  // row 6
	insert(t, db, "twice", kubeconfig("https://t1.example"), false, true, nil)               // row 7
	insert(t, db, "twice", kubeconfig("https://t2.example"), false, true, nil)               // row 8
	insert(t, db, "maybe", kubeconfig("https://m.example"), "perhaps", true, nil)            // row 9
	insert(t, db, "labels", kubeconfig("https://l.example"), false, true, `["a"]`)           // row 10
	insert(t, db, "empty", "", false, true, nil)                                             // row 11
	insert(t, db, "off-broken", "clusters: [", false, "false", nil)                          // row 12: disabled
	insert(t, db, "textbool", kubeconfig("https://tb.example"), "true", "1", nil)            // row 13

	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "", Err: "row 6|name"},
		{Name: "broken", Revision: "1", Err: "row 4|kubeconfig"},
		{Name: "empty", Revision: "1", Err: "row 11|kubeconfig"},
		{Name: "labels", Err: "row 10|labels"},
		{Name: "maybe", Err: "row 9|is_default"},
		{Name: "noserver", Revision: "1", Err: "row 5|kubeconfig.clusters[main].server"},
		{Name: "prod", Host: "https://prod.example", Default: true, Revision: "1"},
		{Name: "stage", Host: "https://stage.example", Revision: "1"},
		{Name: "textbool", Host: "https://tb.example", Default: true, Revision: "1"},
		{Name: "twice", Err: "row 7|name"},
	}, summarize(t, clusters))
	assert.Equal(t, map[string]string{"env": "prod"}, clusters[6].Labels)
	assert.ErrorContains(t, clusters[9].Err, `cluster "twice" is also defined by row 8`)
}

func TestNameClash(t *testing.T) {
	db := openDB(t)
	insert(t, db, "twice", kubeconfig("https://t1.example"), true, true, `{"env": "prod"}`) // row 1
	insert(t, db, "other", kubeconfig("https://o.example"), false, true, nil)               // row 2
	insert(t, db, "twice", kubeconfig("https://t2.example"), false, true, `{"env": "dev"}`) // row 3
	insert(t, db, "twice", kubeconfig("https://t3.example"), false, true, nil)              // row 4

	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "other", Host: "https://o.example", Revision: "1"},
		{Name: "twice", Err: "row 1|name"},
	}, summarize(t, clusters), "no row's is_default is taken, nor its revision")
	assert.EqualError(t, clusters[1].Err, `row 1: field name: cluster "twice" is also defined by row 3, row 4`)
	assert.Nil(t, clusters[1].Config)
	assert.Equal(t, map[string]string{"env": "prod"}, clusters[1].Labels, "the first row's labels")
}

func TestQueryFailures(t *testing.T) {
	db := openDB(t)
	tests := []struct {
		name  string
		query string
		want  string
	}{
		{name: "no such table", query: "SELECT name, kubeconfig FROM nope", want: "query clusters"},
		{name: "no kubeconfig column", query: "SELECT name, labels FROM clusters", want: "no kubeconfig column (columns: name, labels)"},
		{name: "neither", query: "SELECT labels FROM clusters", want: "no name or kubeconfig column"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := sqlsource.New(db, sqlsource.WithQuery(tt.query))
			require.NoError(t, err)
			_, err = src.List(context.Background())
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestKiteSchema(t *testing.T) {
	// kite's own columns, read with aliases; its encrypted config is
	// decoded by a transform (here a stand-in that reverses the text).
	db := openDB(t)
	_, err := db.Exec(`CREATE TABLE kite_clusters (name TEXT, config TEXT, is_default BOOLEAN, enable BOOLEAN, in_cluster BOOLEAN)`)
	require.NoError(t, err)
	reverse := func(b []byte) []byte {
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		return r
	}
	_, err = db.Exec(`INSERT INTO kite_clusters VALUES (?, ?, 1, 1, 0), (?, ?, 0, 1, 1), (?, ?, 0, 1, 0)`,
		"prod", string(reverse([]byte(kubeconfig("https://prod.example")))),
		"local", "",
		"garbled", "\x00\x01")
	require.NoError(t, err)

	src, err := sqlsource.New(db,
		sqlsource.WithQuery(`SELECT name, config AS kubeconfig, is_default, enable AS enabled FROM kite_clusters WHERE in_cluster = ?`, false),
		sqlsource.WithTransform(func(b []byte) ([]byte, error) {
			if b[0] == 0 {
				return nil, errors.New("cannot decrypt")
			}
			return reverse(b), nil
		}))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "garbled", Err: "row 2|kubeconfig"},
		{Name: "prod", Host: "https://prod.example", Default: true},
	}, summarize(t, clusters))
}

func TestFilesAndExecRefusedByDefault(t *testing.T) {
	db := openDB(t)
	insert(t, db, "file", `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: /etc/ssl/ca.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`, false, true, nil)
	insert(t, db, "exec", `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: get-token, apiVersion: client.authentication.k8s.io/v1beta1}}}]
`, false, true, nil)

	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []got{
		{Name: "exec", Revision: "1", Err: "row 2|kubeconfig.users[u].exec"},
		{Name: "file", Revision: "1", Err: "row 1|kubeconfig.clusters[c].certificate-authority"},
	}, summarize(t, clusters))
	for _, c := range clusters {
		assert.ErrorIs(t, c.Err, trust.ErrRefused)
	}
}

// TestExecFromARowNeverRuns drives a real Syncer with the library's
// ClientBuilder against a TLS server that only an exec plugin's token opens:
// by default the row's plugin is refused and never runs; allowed, it runs.
func TestExecFromARowNeverRuns(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowed=%t", allow), func(t *testing.T) {
			srv := trusttest.NewServer(t)
			marker := trusttest.Marker(t)
			db := openDB(t)
			insert(t, db, "x", trusttest.ExecKubeconfig(srv, marker), true, true, nil)
			opts := []sqlsource.Option{sqlsource.WithQuery(query)}
			if allow {
				opts = append(opts, sqlsource.WithTrustPolicy(trust.Policy{AllowExec: true}))
			}
			src, err := sqlsource.New(db, opts...)
			require.NoError(t, err)
			reg := trusttest.RunSyncer(t, src)

			_, err = reg.Get("x")
			if !allow {
				require.Error(t, err)
				trusttest.RequireRefused(t, reg.Snapshot().Err("x"), "row 1", "kubeconfig.users[u].exec")
				assert.False(t, trusttest.Exists(t, marker), "the command ran")
				assert.Zero(t, srv.Authorized())
				return
			}
			require.NoError(t, err, "the plugin's token opened the server")
			assert.True(t, trusttest.Exists(t, marker), "the command did not run: this test could not fail")
		})
	}
}

func TestKeyFileOfARowIsNotOpened(t *testing.T) {
	wire := trusttest.NewTripwire(t)
	db := openDB(t)
	insert(t, db, "x", trusttest.KeyFileKubeconfig("https://c.example", wire.Path), true, true, nil)
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	trusttest.RequireRefused(t, clusters[0].Err, "row 1", "kubeconfig.users[u].client-key")
	assert.False(t, wire.Stop(), "the source opened the key file")
}

func TestRowLimitsAndNames(t *testing.T) {
	db := openDB(t)
	for i := range 5 {
		insert(t, db, fmt.Sprintf("eu/c%d", i), kubeconfig(fmt.Sprintf("https://c%d.example", i)), false, i != 0, nil)
	}
	src, err := sqlsource.New(db, sqlsource.WithQuery(query), sqlsource.WithMaxClusters(3))
	require.NoError(t, err)
	_, err = src.List(context.Background())
	assert.ErrorContains(t, err, "row 5: more than the limit of 3 clusters (WithMaxClusters)", "disabled rows do not count")

	src, err = sqlsource.New(db, sqlsource.WithQuery(query), sqlsource.WithMaxClusters(4))
	require.NoError(t, err)
	clusters, err := src.List(context.Background())
	require.NoError(t, err)
	require.Len(t, clusters, 4)
	assert.Equal(t, got{Name: "eu/c1", Err: "row 2|name"}, summarize(t, clusters[:1])[0])

	src, err = sqlsource.New(db, sqlsource.WithQuery(query), sqlsource.WithRename(kcsource.SanitizeName))
	require.NoError(t, err)
	clusters, err = src.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, got{Name: "eu-c1", Host: "https://c1.example", Revision: "1"}, summarize(t, clusters[:1])[0])
}

// TestSyncerFollowsRows changes rows of a real SQLite file between syncs
// of a real Syncer.
func TestSyncerFollowsRows(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	insert(t, db, "prod", kubeconfig("https://prod-1.example"), true, true, nil)
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
	}, clusterregistry.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0))))
	require.NoError(t, err)
	reg := syncer.Registry()
	sync := func() clusterregistry.SyncReport {
		t.Helper()
		rep, err := syncer.Sync(ctx)
		require.NoError(t, err)
		return rep
	}
	hostOf := func(name string) string {
		t.Helper()
		h, err := reg.Get(name)
		require.NoError(t, err)
		return h
	}

	assert.Equal(t, []string{"prod"}, sync().Added)
	assert.Equal(t, "https://prod-1.example", hostOf("prod"))

	// Changed, with a new revision.
	_, err = db.Exec(`UPDATE clusters SET kubeconfig = ?, version = version + 1 WHERE name = 'prod'`, kubeconfig("https://prod-2.example"))
	require.NoError(t, err)
	assert.Equal(t, []string{"prod"}, sync().Updated)
	assert.Equal(t, "https://prod-2.example", hostOf("prod"))

	// The same revision: not rebuilt, as the revision promises.
	_, err = db.Exec(`UPDATE clusters SET kubeconfig = ? WHERE name = 'prod'`, kubeconfig("https://prod-ignored.example"))
	require.NoError(t, err)
	assert.Equal(t, 1, sync().Unchanged)

	// Broken: the last good client stays, with the error beside it.
	_, err = db.Exec(`UPDATE clusters SET kubeconfig = 'contexts: [', version = version + 1 WHERE name = 'prod'`)
	require.NoError(t, err)
	assert.Equal(t, []string{"prod"}, sync().Failed)
	assert.Equal(t, "https://prod-2.example", hostOf("prod"))
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, reg.Snapshot().Err("prod"), &fe)
	assert.Equal(t, "row 1", fe.Location)

	// Disabled: gone.
	_, err = db.Exec(`UPDATE clusters SET enabled = 0 WHERE name = 'prod'`)
	require.NoError(t, err)
	assert.Equal(t, []string{"prod"}, sync().Removed)
	assert.Empty(t, reg.Snapshot().Names())

	// The table is gone: the state is kept and the error reported.
	insert(t, db, "stage", kubeconfig("https://stage.example"), false, true, nil)
	sync()
	_, err = db.Exec(`DROP TABLE clusters`)
	require.NoError(t, err)
	_, err = syncer.Sync(ctx)
	require.Error(t, err)
	assert.Equal(t, []string{"stage"}, reg.Snapshot().Names())
	assert.Error(t, reg.Snapshot().SourceErr())
}

func TestConcurrentLists(t *testing.T) {
	db := openDB(t)
	for i := range 20 {
		insert(t, db, fmt.Sprintf("c%02d", i), kubeconfig(fmt.Sprintf("https://c%d.example", i)), i == 0, true, nil)
	}
	src, err := sqlsource.New(db, sqlsource.WithQuery(query))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				clusters, err := src.List(context.Background())
				if assert.NoError(t, err) {
					assert.Len(t, clusters, 20)
				}
			}
		}()
	}
	wg.Wait()
}
