package sqltest

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

// benchKubeconfig is a kubeconfig of the size that a real one has: a
// certificate authority inline, a token.
func benchKubeconfig(server string) string {
	ca := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 1200)))
	return fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: main
clusters: [{name: main, cluster: {server: %q, certificate-authority-data: %q}}]
contexts: [{name: main, context: {cluster: main, user: main}}]
users: [{name: main, user: {token: tok-s3cr3t}}]
`, server, ca)
}

func benchDB(b *testing.B, n int) *sql.DB {
	b.Helper()
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "clusters.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(schema); err != nil {
		b.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := tx.Exec(`INSERT INTO clusters (name, kubeconfig, enabled) VALUES (?, ?, 1)`,
			fmt.Sprintf("c%05d", i), benchKubeconfig(fmt.Sprintf("https://c%d.example:6443", i))); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkList lists n rows of which none or one changed since the
// previous List, and SQLite alone: the same query with its rows scanned and
// nothing decoded. The baseline without the memo of decoded kubeconfigs is
// package sqlsource's BenchmarkListMemo, which reaches the memo.
func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1000, 10_000} {
		db := benchDB(b, n)
		b.Run(fmt.Sprintf("rows=%d/sqlite-only", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := scanAll(b, db); got != n {
					b.Fatalf("%d rows", got)
				}
			}
		})
		for _, changed := range []int{0, 1} {
			b.Run(fmt.Sprintf("rows=%d/changed=%d", n, changed), func(b *testing.B) {
				src, err := sqlsource.New(db, sqlsource.WithQuery(query))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := src.List(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if changed > 0 {
						b.StopTimer()
						i++
						if _, err := db.Exec(`UPDATE clusters SET kubeconfig = ? WHERE name = 'c00000'`,
							benchKubeconfig(fmt.Sprintf("https://c0-%d.example:6443", i))); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					clusters, err := src.List(ctx)
					if err != nil || len(clusters) != n {
						b.Fatal(err, len(clusters))
					}
				}
			})
		}
	}
}

func scanAll(b *testing.B, db *sql.DB) int {
	rows, err := db.Query(query)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	values := make([]any, 6)
	ptrs := make([]any, 6)
	for i := range values {
		ptrs[i] = &values[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}
