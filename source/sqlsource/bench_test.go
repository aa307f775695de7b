package sqlsource_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

// BenchmarkListMemo lists n rows of the fake driver, of which one changed
// since the previous List, with the memo of decoded kubeconfigs and without
// it (the baseline, as before the memo). The sqltest module's BenchmarkList
// runs the same over a real SQLite.
func BenchmarkListMemo(b *testing.B) {
	const n = 1000
	for _, memo := range []bool{true, false} {
		b.Run(fmt.Sprintf("rows=%d/changed=1/memo=%t", n, memo), func(b *testing.B) {
			tb := &table{}
			server := func(i int) string { return fmt.Sprintf("https://c%d.example:6443", i) }
			tb.set(rowsOf(n, server)...)
			src, err := sqlsource.New(tableDB(b, tb), sqlsource.WithQuery(query))
			if err != nil {
				b.Fatal(err)
			}
			if !memo {
				sqlsource.MemoOf(src).Disable()
			}
			ctx := context.Background()
			b.ReportAllocs()
			v := 0
			for b.Loop() {
				b.StopTimer()
				v++
				tb.set(rowsOf(n, func(i int) string {
					if i == 0 {
						return fmt.Sprintf("https://c0-%d.example:6443", v)
					}
					return server(i)
				})...)
				b.StartTimer()
				if clusters, err := src.List(ctx); err != nil || len(clusters) != n {
					b.Fatal(err, len(clusters))
				}
			}
		})
	}
}
