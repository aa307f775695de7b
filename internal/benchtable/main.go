// Command benchtable reads the output of the repository's benchmarks
// (go test -bench, any -count) and prints the ratios that README's
// Performance section reports, each beside its target. It takes the median
// of repeated runs. Usage:
//
//	go test -run='^$' -bench=. -benchmem -count=6 | go run ./internal/benchtable
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results maps a benchmark name (without the -GOMAXPROCS suffix) and a unit
// to the values of its runs.
type results map[string]map[string][]float64

var procSuffix = regexp.MustCompile(`-\d+$`)

func parse(r io.Reader) (results, error) {
	res := results{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), "")
		if res[name] == nil {
			res[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			res[name][fields[i+1]] = append(res[name][fields[i+1]], v)
		}
	}
	return res, sc.Err()
}

// get returns the median of a benchmark's unit, and whether it was there.
func (r results) get(name, unit string) (float64, bool) {
	vs := slices.Clone(r[name][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	return vs[len(vs)/2], true
}

type row struct{ what, got, target, verdict string }

func main() {
	res, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	var rows []row
	add := func(what, target string, ok bool, format string, args ...any) {
		verdict := "missed"
		if ok {
			verdict = "met"
		}
		rows = append(rows, row{what, fmt.Sprintf(format, args...), target, verdict})
	}
	lookup := func(access, impl string, n int, unit string) (float64, bool) {
		return res.get(fmt.Sprintf("Lookup/access=%s/impl=%s/clusters=%d", access, impl, n), unit)
	}
	for _, access := range []string{"all", "hot10"} {
		for _, n := range []int{10, 1000, 10000} {
			ours, ok1 := lookup(access, "ours", n, "ns/op")
			l, ok2 := lookup(access, "L", n, "ns/op")
			a, _ := lookup(access, "A", n, "ns/op")
			b, _ := lookup(access, "B", n, "ns/op")
			allocs, _ := lookup(access, "ours", n, "allocs/op")
			if ok1 && ok2 {
				add(fmt.Sprintf("lookup (%s), %d clusters: ours / L", access, n), "≤ 1.5x, 0 allocs", ours/l <= 1.5 && allocs == 0,
					"%.1f / %.1f ns = %.2fx (A %.0f, B %.0f ns), %.0f allocs", ours, l, ours/l, a, b, allocs)
			}
			lease, ok3 := lookup(access, "lease", n, "ns/op")
			if r, ok := lookup(access, "R", n, "ns/op"); ok && ok3 {
				leaseAllocs, _ := lookup(access, "lease", n, "allocs/op")
				add(fmt.Sprintf("lease (%s), %d clusters: lease / R", access, n), "≤ 1.2x", lease/r <= 1.2,
					"%.0f / %.0f ns = %.2fx, %.0f allocs (R / L = %.1fx)", lease, r, lease/r, leaseAllocs, r/l)
			}
		}
		small, ok1 := lookup(access, "ours", 10, "ns/op")
		big, ok2 := lookup(access, "ours", 10000, "ns/op")
		lSmall, _ := lookup(access, "L", 10, "ns/op")
		lBig, _ := lookup(access, "L", 10000, "ns/op")
		if ok1 && ok2 {
			add(fmt.Sprintf("lookup (%s), 10,000 clusters / 10", access), "≤ 1.2x", big/small <= 1.2,
				"%.2fx (L: %.2fx)", big/small, lBig/lSmall)
		}
	}
	if ours, ok := res.get("Snapshot/impl=ours/op=take/clusters=10000", "ns/op"); ok {
		b, _ := res.get("Snapshot/impl=B/op=take/clusters=10000", "ns/op")
		add("snapshot, 10,000 clusters: B's copy / ours", "≥ 100x", b/ours >= 100, "%.0f / %.1f ns = %.0fx", b, ours, b/ours)
	}
	if p99, ok := res.get("WriteLockHold/impl=ours/clusters=10000", "lockhold-p99-ns"); ok {
		a, _ := res.get("WriteLockHold/impl=A/clusters=10000", "lockhold-p99-ns")
		small, _ := res.get("WriteLockHold/impl=ours/clusters=10", "lockhold-p99-ns")
		add("write-lock hold p99, 10,000 clusters, 50ms builds", "< 1µs", p99 < 1000,
			"%.0f ns (10 clusters: %.0f ns; A holds it %.1f ms)", p99, small, a/1e6)
	}
	if ours, ok := res.get("SyncBlackHole/impl=ours", "ns/op"); ok {
		bound, _ := res.get("SyncBlackHole/impl=ours", "bound-s")
		b, _ := res.get("SyncBlackHole/impl=B", "ns/op")
		add("sync, 100 changed, 1 black-holed: ours", fmt.Sprintf("≤ %.2fs", bound), ours/1e9 <= bound, "%.2fs", ours/1e9)
		if b > 0 {
			add("sync, 100 changed, 1 black-holed: B / ours", "≥ 10x", b/ours >= 10, "%.1fs / %.2fs = %.1fx", b/1e9, ours/1e9, b/ours)
		}
	}
	if ns, ok := res.get("SyncNoChange/clusters=10000", "ns/op"); ok {
		allocs, _ := res.get("SyncNoChange/clusters=10000", "allocs/op")
		add("sync with no change, 10,000 clusters", "< 10ms", ns < 10e6, "%.1f ms, %.0f allocs", ns/1e6, allocs)
	}
	if ns, ok := res.get("SyncNoChange/identical/clusters=10000", "ns/op"); ok {
		equal, _ := res.get("SyncNoChange/clusters=10000", "ns/op")
		add("sync with no change, 10,000 clusters, same config objects", "< 10ms", ns < 10e6,
			"%.1f ms (equal copies: %.1f ms)", ns/1e6, equal/1e6)
	}
	for _, n := range []int{1000, 10000} {
		lazy, ok1 := res.get(fmt.Sprintf("IdleClusterMemory/eager=false/clusters=%d", n), "B/cluster")
		eager, ok2 := res.get(fmt.Sprintf("IdleClusterMemory/eager=true/clusters=%d", n), "B/cluster")
		if ok1 && ok2 {
			add(fmt.Sprintf("idle memory per cluster, %d clusters: ours / eager", n), "≤ 0.25", lazy/eager <= 0.25,
				"%.1f / %.1f KB = %.2f", lazy/1024, eager/1024, lazy/eager)
		}
	}
	for _, n := range []int{1000, 10000} {
		rows = append(rows, coldStartRows(res, n)...)
	}

	w := [3]int{len("measure"), len("result"), len("target")}
	for _, r := range rows {
		w[0], w[1], w[2] = max(w[0], len(r.what)), max(w[1], len(r.got)), max(w[2], len(r.target))
	}
	fmt.Printf("| %-*s | %-*s | %-*s | |\n", w[0], "measure", w[1], "result", w[2], "target")
	fmt.Printf("|%s|%s|%s|---|\n", strings.Repeat("-", w[0]+2), strings.Repeat("-", w[1]+2), strings.Repeat("-", w[2]+2))
	for _, r := range rows {
		fmt.Printf("| %-*s | %-*s | %-*s | %s |\n", w[0], r.what, w[1], r.got, w[2], r.target, r.verdict)
	}
}

// coldStartRows compares one Sync from empty of n clusters (BenchmarkColdStart)
// with the client-go baseline, and with SkipVersionCheck.
func coldStartRows(res results, n int) []row {
	get := func(impl, unit string) float64 {
		v, _ := res.get(fmt.Sprintf("ColdStart/impl=%s/clusters=%d", impl, n), unit)
		return v
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	ours, base := get("ours", "seconds"), get("client-go", "seconds")
	if ours == 0 || base == 0 {
		return nil
	}
	rows := []row{{
		fmt.Sprintf("cold start, %d clusters: ours / client-go", n),
		fmt.Sprintf("%.1fs / %.1fs (%.0f / %.0f clusters/s), %.0f / %.0f requests", ours, base,
			get("ours", "clusters/s"), get("client-go", "clusters/s"), get("ours", "requests"), get("client-go", "requests")),
		"≤ 1.1x", verdict(ours/base <= 1.1),
	}}
	kb, baseKB := get("ours", "heap-after-GC-KB/cluster"), get("client-go", "heap-after-GC-KB/cluster")
	rows = append(rows, row{
		fmt.Sprintf("cold start, %d clusters: heap after GC, ours / client-go", n),
		fmt.Sprintf("%.1f / %.1f KB a cluster (peak heap %.0f / %.0f MB, RSS +%.0f / +%.0f MB)", kb, baseKB,
			get("ours", "peak-heap-MB"), get("client-go", "peak-heap-MB"), get("ours", "peak-RSS-MB"), get("client-go", "peak-RSS-MB")),
		"≤ 0.5x", verdict(kb/baseKB <= 0.5),
	})
	if skip := get("ours-skipversion", "seconds"); skip > 0 {
		rows = append(rows, row{
			fmt.Sprintf("cold start, %d clusters: SkipVersionCheck / ours", n),
			fmt.Sprintf("%.2fs / %.1fs = %.0fx faster (%.0f clusters/s, %.0f requests, peak heap %.0f MB)", skip, ours, ours/skip,
				get("ours-skipversion", "clusters/s"), get("ours-skipversion", "requests"), get("ours-skipversion", "peak-heap-MB")),
			"≥ 10x", verdict(ours/skip >= 10),
		})
	}
	return rows
}
