package sqlsource_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

// The change query against a real database is tested in the sqltest module.
// These tests need a database that hangs, which SQLite cannot be made to do.

const interval = time.Second

// hangDB is a database whose first failFirst queries fail at once and whose
// later ones block until their context ends.
type hangDB struct {
	failFirst int64
	queries   atomic.Int64
}

func (d *hangDB) Open(string) (driver.Conn, error)             { return hangConn{d}, nil }
func (d *hangDB) Connect(context.Context) (driver.Conn, error) { return hangConn{d}, nil }
func (d *hangDB) Driver() driver.Driver                        { return d }

type hangConn struct{ db *hangDB }

func (hangConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (hangConn) Close() error                        { return nil }
func (hangConn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }

func (c hangConn) QueryContext(ctx context.Context, _ string, _ []driver.NamedValue) (driver.Rows, error) {
	if c.db.queries.Add(1) <= c.db.failFirst {
		return nil, errors.New("connection refused")
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func openHangDB(t *testing.T, failFirst int64) (*sql.DB, *hangDB) {
	t.Helper()
	h := &hangDB{failFirst: failFirst}
	db := sql.OpenDB(h)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	return db, h
}

// watch runs src.Watch until the test ends or stop is called, counting the
// calls of changed. stop waits for Watch to return, and fails the test if it
// does not within 5s.
type watch struct {
	changes atomic.Int64
	stop    func()
}

func startWatch(t *testing.T, src *sqlsource.Source) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{}
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
	return w
}

func TestNewValidatesWatch(t *testing.T) {
	_, err := sqlsource.New(&sql.DB{}, sqlsource.WithChangeQuery(" \n"), sqlsource.WithPollInterval(0), sqlsource.WithClock(nil))
	assert.EqualError(t, err, "sqlsource: change query must not be empty; poll interval must be positive, got 0s; clock must not be nil")

	_, err = sqlsource.New(&sql.DB{}, sqlsource.WithPollInterval(-time.Second))
	assert.EqualError(t, err, "sqlsource: poll interval must be positive, got -1s")

	_, err = sqlsource.New(&sql.DB{}, sqlsource.WithChangeQuery("SELECT max(version) FROM clusters WHERE owner = ?", "me"))
	assert.NoError(t, err)
}

func TestWatchWithoutChangeQuery(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	src, err := sqlsource.New(&sql.DB{}, sqlsource.WithClock(clk))
	require.NoError(t, err)
	// A Watch that blocked would fail the test when ctx ends, not hang it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	changes := 0
	assert.NoError(t, src.Watch(ctx, func() { changes++ }))
	assert.NoError(t, ctx.Err(), "a Watch without a change query returns at once")
	assert.Zero(t, changes, "a Watch without a change query does not ask for a second List")
	assert.False(t, clk.HasWaiters(), "a Watch without a change query polls nothing")
}

func TestWatchSurvivesAHungDatabase(t *testing.T) {
	db, h := openHangDB(t, 0)
	clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
	var l trusttest.Logs
	src, err := sqlsource.New(db, sqlsource.WithChangeQuery("SELECT version FROM clusters WHERE owner = ?", "arg-s3cr3t"),
		sqlsource.WithClock(clk), sqlsource.WithPollInterval(interval), sqlsource.WithLogger(l.Logger()))
	require.NoError(t, err)
	sqlsource.SetChangeTimeout(src, 10*time.Millisecond)
	w := startWatch(t, src)

	// The first run times out: changed is called, as it must be at the start,
	// and the timer is set.
	require.Eventually(t, func() bool { return w.changes.Load() == 1 && clk.HasWaiters() }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, h.queries.Load())
	lines := l.Lines()
	require.Len(t, lines, 1)
	assert.Contains(t, lines[0], "change query: no result within 10ms: context deadline exceeded")
	assert.NotContains(t, lines[0], "s3cr3t")

	// Still hanging: no more calls, and no more queries than polls.
	for n := int64(2); n <= 3; n++ {
		clk.Step(interval)
		require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond)
		assert.Equal(t, n, h.queries.Load())
		assert.EqualValues(t, 1, w.changes.Load())
	}
	assert.Len(t, l.Lines(), 1, "a query that keeps failing is logged once")
}

func TestWatchReturnsWhileAQueryHangs(t *testing.T) {
	tests := []struct {
		name        string
		failFirst   int64 // queries that fail at once, before the one that hangs
		wantChanges int64
	}{
		{name: "first run", failFirst: 0, wantChanges: 0},
		{name: "a later run", failFirst: 1, wantChanges: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, h := openHangDB(t, tt.failFirst)
			clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
			src, err := sqlsource.New(db, sqlsource.WithChangeQuery("SELECT 1"), sqlsource.WithClock(clk), sqlsource.WithPollInterval(interval))
			require.NoError(t, err)
			sqlsource.SetChangeTimeout(src, time.Hour)
			w := startWatch(t, src)
			for range tt.failFirst {
				require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond)
				clk.Step(interval)
			}
			require.Eventually(t, func() bool { return h.queries.Load() == tt.failFirst+1 }, 5*time.Second, time.Millisecond)
			w.stop()
			assert.Equal(t, tt.wantChanges, w.changes.Load())
		})
	}
}

func TestSameRow(t *testing.T) {
	noon := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		a, b []any
		want bool
	}{
		{name: "no rows", a: nil, b: nil, want: true},
		{name: "no row and a NULL", a: nil, b: []any{nil}, want: false},
		{name: "NULLs", a: []any{nil, int64(1)}, b: []any{nil, int64(1)}, want: true},
		{name: "NULL and zero", a: []any{nil}, b: []any{int64(0)}, want: false},
		{name: "counts", a: []any{int64(3)}, b: []any{int64(4)}, want: false},
		{name: "number and text", a: []any{int64(1)}, b: []any{"1"}, want: false},
		{name: "texts", a: []any{"2026-01-02"}, b: []any{"2026-01-02"}, want: true},
		{name: "one instant in two zones", a: []any{noon}, b: []any{noon.In(time.FixedZone("X", 3600))}, want: true},
		{name: "two instants", a: []any{noon}, b: []any{noon.Add(time.Nanosecond)}, want: false},
		{name: "NaNs", a: []any{math.NaN()}, b: []any{math.NaN()}, want: true},
		{name: "floats", a: []any{1.5}, b: []any{1.5}, want: true},
		{name: "more columns", a: []any{int64(1)}, b: []any{int64(1), nil}, want: false},
		{name: "a driver's own type", a: []any{[]string{"a"}}, b: []any{[]string{"a"}}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, sqlsource.SameRow(tt.a, tt.b))
			assert.Equal(t, tt.want, sqlsource.SameRow(tt.b, tt.a))
		})
	}
}
