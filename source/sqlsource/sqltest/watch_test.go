package sqltest

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

const pollInterval = time.Second

// changeQuery changes whenever a row is added, removed, or changed with a
// new version.
const changeQuery = `SELECT count(*), max(version) FROM clusters`

// newWatchedSource returns a Source over db with the change query and a fake
// clock.
func newWatchedSource(t *testing.T, db *sql.DB, l *trusttest.Logs, query string, args ...any) (*sqlsource.Source, *fakeclock.FakeClock) {
	t.Helper()
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	src, err := sqlsource.New(db, sqlsource.WithQuery(`SELECT name, kubeconfig, is_default, enabled, labels, version AS revision FROM clusters ORDER BY id`),
		sqlsource.WithChangeQuery(query, args...), sqlsource.WithPollInterval(pollInterval),
		sqlsource.WithClock(clk), sqlsource.WithLogger(l.Logger()))
	require.NoError(t, err)
	return src, clk
}

// watcher is a running Watch on a fake clock, counting its calls of changed.
type watcher struct {
	t       *testing.T
	clk     *fakeclock.FakeClock
	changes atomic.Int64
	stop    func()
}

// startWatch runs src.Watch until the test ends, and waits until it has
// called changed, as it must when it starts, and set its timer.
func startWatch(t *testing.T, src *sqlsource.Source, clk *fakeclock.FakeClock) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, clk: clk}
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func() { w.changes.Add(1) }) }()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Error("Watch did not return after its context ended")
			}
		})
	}
	t.Cleanup(w.stop)
	require.Eventually(t, func() bool { return w.changes.Load() == 1 && clk.HasWaiters() }, 5*time.Second, time.Millisecond)
	return w
}

// poll moves the clock by one poll interval and waits until the watch has
// run the change query, called changed if it had to, and set its timer
// again: the timer leaves the clock's waiters when it fires, and returns
// only once the run is done.
func (w *watcher) poll() {
	w.t.Helper()
	pollAndWait(w.t, w.clk)
}

func pollAndWait(t *testing.T, clk *fakeclock.FakeClock) {
	t.Helper()
	n := clk.Waiters()
	require.NotZero(t, n, "no watch waits on the clock")
	clk.Step(pollInterval)
	require.Eventually(t, func() bool { return clk.Waiters() == n }, 5*time.Second, 100*time.Microsecond)
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	_, err := db.Exec(query, args...)
	require.NoError(t, err)
}

func TestWatchPollsTheChangeQuery(t *testing.T) {
	db := openDB(t)
	insert(t, db, "prod", kubeconfig("https://prod.example"), true, true, nil)
	var l trusttest.Logs
	src, clk := newWatchedSource(t, db, &l, changeQuery)
	w := startWatch(t, src, clk)

	w.poll()
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load(), "nothing changed, nothing reported")

	exec(t, db, `UPDATE clusters SET kubeconfig = ?, version = version + 1 WHERE name = 'prod'`, kubeconfig("https://prod-2.example"))
	w.poll()
	assert.EqualValues(t, 2, w.changes.Load(), "an update with a new version")
	w.poll()
	assert.EqualValues(t, 2, w.changes.Load(), "reported once")

	insert(t, db, "stage", kubeconfig("https://stage.example"), false, true, nil)
	w.poll()
	assert.EqualValues(t, 3, w.changes.Load(), "an insert")

	exec(t, db, `DELETE FROM clusters WHERE name = 'stage'`)
	w.poll()
	assert.EqualValues(t, 4, w.changes.Load(), "a delete")

	insert(t, db, "dev", kubeconfig("https://dev.example"), false, true, nil)
	exec(t, db, `UPDATE clusters SET version = version + 1 WHERE name = 'prod'`)
	w.poll()
	assert.EqualValues(t, 5, w.changes.Load(), "two changes between runs, one call")

	exec(t, db, `UPDATE clusters SET labels = '{"a": "b"}' WHERE name = 'prod'`)
	w.poll()
	assert.EqualValues(t, 5, w.changes.Load(), "a write that leaves the change query's row as it was goes unseen")

	assert.Empty(t, l.Lines())
	w.stop()
	assert.EqualValues(t, 5, w.changes.Load())
}

func TestWatchComparesBlobsTimesAndNulls(t *testing.T) {
	db := openDB(t)
	exec(t, db, `CREATE TABLE revision (id INTEGER PRIMARY KEY, rev BLOB, at DATETIME)`)
	var l trusttest.Logs
	src, clk := newWatchedSource(t, db, &l, `SELECT rev, at FROM revision WHERE id = ?`, 1)
	w := startWatch(t, src, clk)

	steps := []struct {
		name  string
		write string
		args  []any
		want  int64
	}{
		{name: "a row of NULLs where there was none", write: `INSERT INTO revision (id) VALUES (1)`, want: 2},
		{name: "the same NULLs", write: `UPDATE revision SET rev = NULL`, want: 2},
		{name: "a blob", write: `UPDATE revision SET rev = ?`, args: []any{[]byte{1, 2}}, want: 3},
		{name: "the same blob", write: `UPDATE revision SET rev = ?`, args: []any{[]byte{1, 2}}, want: 3},
		{name: "another blob", write: `UPDATE revision SET rev = ?`, args: []any{[]byte{1, 3}}, want: 4},
		{name: "a time", write: `UPDATE revision SET at = ?`, args: []any{time.Unix(1_000_000, 0).UTC()}, want: 5},
		{name: "the same time", write: `UPDATE revision SET at = ?`, args: []any{time.Unix(1_000_000, 0).UTC()}, want: 5},
		{name: "a later time", write: `UPDATE revision SET at = ?`, args: []any{time.Unix(1_000_001, 0).UTC()}, want: 6},
		{name: "no row again", write: `DELETE FROM revision`, want: 7},
	}
	for _, s := range steps {
		exec(t, db, s.write, s.args...)
		w.poll()
		assert.Equal(t, s.want, w.changes.Load(), s.name)
	}
	assert.Empty(t, l.Lines())
}

func TestWatchReportsAFailingQueryOnce(t *testing.T) {
	db := openDB(t)
	insert(t, db, "prod", kubeconfig("https://prod.example"), true, true, nil)
	var l trusttest.Logs
	src, clk := newWatchedSource(t, db, &l, `SELECT count(*) FROM clusters WHERE name <> ?`, "arg-s3cr3t")
	w := startWatch(t, src, clk)

	exec(t, db, `DROP TABLE clusters`)
	w.poll()
	assert.EqualValues(t, 2, w.changes.Load(), "failing after working: the next List reports the error")
	w.poll()
	w.poll()
	assert.EqualValues(t, 2, w.changes.Load(), "still failing: nothing new")
	lines := l.Lines()
	require.Len(t, lines, 1, "logged once")
	assert.Contains(t, lines[0], "change query: ")
	assert.Contains(t, lines[0], "no such table: clusters")
	assert.NotContains(t, lines[0], "s3cr3t", "the error quotes an argument")

	exec(t, db, schema)
	w.poll()
	assert.EqualValues(t, 3, w.changes.Load(), "working again")
	w.poll()
	assert.EqualValues(t, 3, w.changes.Load())
	lines = l.Lines()
	require.Len(t, lines, 2)
	assert.Contains(t, lines[1], "Change query works again")
}

func TestWatchOfAQueryThatFailsFromTheStart(t *testing.T) {
	db := openDB(t)
	var l trusttest.Logs
	src, clk := newWatchedSource(t, db, &l, `SELECT max(rev) FROM revision`)
	w := startWatch(t, src, clk)
	require.Len(t, l.Lines(), 1, "the first run's error is logged")
	assert.Contains(t, l.Lines()[0], "no such table: revision")
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load())

	exec(t, db, `CREATE TABLE revision (rev INTEGER)`)
	w.poll()
	assert.EqualValues(t, 2, w.changes.Load(), "working now")
}

func TestWatchRejectsMoreThanOneRow(t *testing.T) {
	db := openDB(t)
	insert(t, db, "prod", kubeconfig("https://prod.example"), true, true, nil)
	insert(t, db, "stage", kubeconfig("https://stage.example"), false, true, nil)
	var l trusttest.Logs
	src, clk := newWatchedSource(t, db, &l, `SELECT version FROM clusters`)
	w := startWatch(t, src, clk)
	w.poll()
	assert.EqualValues(t, 1, w.changes.Load())
	require.Len(t, l.Lines(), 1)
	assert.Contains(t, l.Lines()[0], "change query: more than one row")
}

// TestSyncerFollowsTheChangeQuery runs a Syncer whose interval is an hour:
// only the source's watch can make it list the table again.
func TestSyncerFollowsTheChangeQuery(t *testing.T) {
	db := openDB(t)
	insert(t, db, "prod", kubeconfig("https://prod.example"), true, true, nil)
	var l trusttest.Logs
	src, clk := newWatchedSource(t, db, &l, changeQuery)
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.BuilderFuncs[string]{
		BuildFunc: func(_ context.Context, c clusterregistry.Cluster) (string, error) { return c.Config.Host, nil },
	}, clusterregistry.WithInterval(time.Hour))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	require.NoError(t, syncer.WaitForFirstSync(ctx))
	reg := syncer.Registry()
	require.Equal(t, []string{"prod"}, reg.Snapshot().Names())
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond, "the watch has started")

	insert(t, db, "stage", kubeconfig("https://stage.example"), false, true, nil)
	pollAndWait(t, clk)
	require.Eventually(t, func() bool {
		h, err := reg.Get("stage")
		return err == nil && h == "https://stage.example"
	}, 5*time.Second, time.Millisecond, "the inserted row was not synced")

	exec(t, db, `UPDATE clusters SET kubeconfig = ?, version = version + 1 WHERE name = 'prod'`, kubeconfig("https://prod-2.example"))
	pollAndWait(t, clk)
	require.Eventually(t, func() bool {
		h, err := reg.Get("prod")
		return err == nil && h == "https://prod-2.example"
	}, 5*time.Second, time.Millisecond, "the updated row was not synced")

	// The table is gone: the Syncer lists once more, reports the error and
	// keeps its clusters.
	exec(t, db, `DROP TABLE clusters`)
	pollAndWait(t, clk)
	require.Eventually(t, func() bool { return reg.Snapshot().SourceErr() != nil }, 5*time.Second, time.Millisecond)
	assert.ErrorContains(t, reg.Snapshot().SourceErr(), "no such table")
	assert.Equal(t, []string{"prod", "stage"}, reg.Snapshot().Names())
	assert.True(t, strings.Contains(strings.Join(l.Lines(), "\n"), "change query: "))
}
