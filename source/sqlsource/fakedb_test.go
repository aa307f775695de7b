package sqlsource_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
)

// table is a database/sql driver that answers every query with its rows of
// name and kubeconfig, so that the memo's tests need no real database (the
// sqltest module has those). Safe for concurrent use.
type table struct {
	mu   sync.Mutex // protects rows and err
	rows [][]driver.Value
	err  error // set: every query fails with it
}

// tableDB returns a *sql.DB over rows of name and kubeconfig.
func tableDB(t testing.TB, tb *table) *sql.DB {
	db := sql.OpenDB(tb)
	t.Cleanup(func() { db.Close() })
	return db
}

func (tb *table) set(rows ...[2]string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows = tb.rows[:0]
	for _, r := range rows {
		tb.rows = append(tb.rows, []driver.Value{r[0], r[1]})
	}
}

func (tb *table) fail(err error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.err = err
}

func (tb *table) Connect(context.Context) (driver.Conn, error) { return conn{tb}, nil }
func (tb *table) Driver() driver.Driver                        { return drv{tb} }

type drv struct{ tb *table }

func (d drv) Open(string) (driver.Conn, error) { return conn(d), nil }

type conn struct{ tb *table }

func (c conn) Prepare(string) (driver.Stmt, error) { return stmt(c), nil }
func (c conn) Close() error                        { return nil }
func (c conn) Begin() (driver.Tx, error)           { return nil, errors.New("no transactions") }

type stmt struct{ tb *table }

func (s stmt) Close() error  { return nil }
func (s stmt) NumInput() int { return -1 }
func (s stmt) Exec([]driver.Value) (driver.Result, error) {
	return nil, errors.New("read only")
}

func (s stmt) Query([]driver.Value) (driver.Rows, error) {
	s.tb.mu.Lock()
	defer s.tb.mu.Unlock()
	if s.tb.err != nil {
		return nil, s.tb.err
	}
	return &rows{rows: slices.Clone(s.tb.rows)}, nil
}

type rows struct{ rows [][]driver.Value }

func (r *rows) Columns() []string { return []string{"name", "kubeconfig"} }
func (r *rows) Close() error      { return nil }
func (r *rows) Next(dest []driver.Value) error {
	if len(r.rows) == 0 {
		return io.EOF
	}
	copy(dest, r.rows[0])
	r.rows = r.rows[1:]
	return nil
}

// kubeconfigAt is a kubeconfig with one context whose cluster is at server.
func kubeconfigAt(server string) string {
	return fmt.Sprintf(`
current-context: main
clusters: [{name: main, cluster: {server: %q}}]
contexts: [{name: main, context: {cluster: main, user: main}}]
users: [{name: main, user: {token: tok-s3cr3t}}]
`, server)
}
