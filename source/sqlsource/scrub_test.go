package sqlsource_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry/source/internal/trusttest"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

const secret = "arg-s3cr3t"

// echoDB is a database whose queries fail with an error that quotes their
// first argument, as PostgreSQL's `invalid input syntax for type uuid: "..."`
// does. If hang is set, a query first blocks until its context ends, and its
// error wraps the context's.
type echoDB struct{ hang bool }

func (d *echoDB) Open(string) (driver.Conn, error)             { return echoConn{d}, nil }
func (d *echoDB) Connect(context.Context) (driver.Conn, error) { return echoConn{d}, nil }
func (d *echoDB) Driver() driver.Driver                        { return d }

type echoConn struct{ db *echoDB }

func (echoConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (echoConn) Close() error                        { return nil }
func (echoConn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }

func (c echoConn) QueryContext(ctx context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if c.db.hang {
		<-ctx.Done()
		return nil, fmt.Errorf("canceling statement with %q: %w", args[0].Value, ctx.Err())
	}
	return nil, fmt.Errorf("invalid input syntax for type uuid: %q", args[0].Value)
}

func openEchoDB(t *testing.T, hang bool) *sql.DB {
	t.Helper()
	db := sql.OpenDB(&echoDB{hang: hang})
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	return db
}

func TestListHidesArguments(t *testing.T) {
	src, err := sqlsource.New(openEchoDB(t, false), sqlsource.WithQuery("SELECT * FROM clusters WHERE id = ?", secret))
	require.NoError(t, err)
	_, err = src.List(context.Background())
	assert.EqualError(t, err, `query clusters: invalid input syntax for type uuid: "$1"`)

	src, err = sqlsource.New(openEchoDB(t, true), sqlsource.WithQuery("SELECT * FROM clusters WHERE id = ?", secret))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = src.List(ctx)
	assert.EqualError(t, err, `query clusters: canceling statement with "$1": context deadline exceeded`)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestWatchHidesArguments(t *testing.T) {
	tests := []struct {
		name     string
		hang     bool
		wantLine string
	}{
		{name: "failing", wantLine: `change query: invalid input syntax for type uuid: \"$1\"`},
		{name: "timing out", hang: true, wantLine: `change query: no result within 10ms: canceling statement with \"$1\": context deadline exceeded`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := fakeclock.NewFakeClock(time.Unix(1_000_000, 0))
			var l trusttest.Logs
			src, err := sqlsource.New(openEchoDB(t, tt.hang), sqlsource.WithChangeQuery("SELECT version FROM clusters WHERE id = ?", secret),
				sqlsource.WithClock(clk), sqlsource.WithLogger(l.Logger()))
			require.NoError(t, err)
			sqlsource.SetChangeTimeout(src, 10*time.Millisecond)
			w := startWatch(t, src)
			require.Eventually(t, func() bool { return w.changes.Load() == 1 }, 5*time.Second, time.Millisecond)
			lines := l.Lines()
			require.Len(t, lines, 1)
			assert.Contains(t, lines[0], tt.wantLine)
			assert.NotContains(t, lines[0], "s3cr3t")
		})
	}
}

func TestScrub(t *testing.T) {
	driverErr := errors.New(`bad input "arg-s3cr3t" for "ab", "12345" or "arg-s3cr3t-2"`)
	tests := []struct {
		name string
		give []any
		want string
	}{
		{name: "no arguments", give: nil, want: driverErr.Error()},
		{name: "not quoted", give: []any{"other"}, want: driverErr.Error()},
		{name: "string", give: []any{"arg-s3cr3t"}, want: `bad input "$1" for "ab", "12345" or "$1-2"`},
		{name: "bytes", give: []any{int64(1), []byte("arg-s3cr3t")}, want: `bad input "$2" for "ab", "12345" or "$2-2"`},
		{name: "named", give: []any{sql.Named("id", "arg-s3cr3t")}, want: `bad input "$1" for "ab", "12345" or "$1-2"`},
		{name: "longest first", give: []any{"arg-s3cr3t", "arg-s3cr3t-2"}, want: `bad input "$1" for "ab", "12345" or "$2"`},
		{name: "short and not text", give: []any{"ab", 12345, "12345"}, want: `bad input "arg-s3cr3t" for "ab", "$3" or "arg-s3cr3t-2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, sqlsource.Scrub(driverErr, tt.give), tt.want)
		})
	}
}

func TestScrubKeepsOnlyTheContextError(t *testing.T) {
	assert.NoError(t, sqlsource.Scrub(nil, []any{secret}))

	driverErr := errors.New("bad input " + secret)
	assert.Same(t, driverErr, sqlsource.Scrub(driverErr, []any{"other"}), "an error that quotes no argument is returned as is")
	err := sqlsource.Scrub(driverErr, []any{secret})
	assert.NotErrorIs(t, err, driverErr)
	assert.Nil(t, errors.Unwrap(err))

	for _, ctxErr := range []error{context.DeadlineExceeded, context.Canceled} {
		err := sqlsource.Scrub(fmt.Errorf("%s: %w", secret, ctxErr), []any{secret})
		assert.EqualError(t, err, "$1: "+ctxErr.Error())
		assert.ErrorIs(t, err, ctxErr)
	}
}
