package shard

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// interval is one client of one cluster in one process, from the start of
// its Build to the end of its Release (or of a failed Build). Times are
// Unix nanoseconds of the wall clock, which every process shares; zero for
// what has not happened.
type interval struct {
	identity     string
	pid          int
	cluster      string
	client       int64
	start        int64 // build-start
	built        int64 // build-end: the client serves from here
	releaseStart int64 // release-start: it serves until here
	end          int64 // release-end or build-fail; 0 while held
}

// key names the client: its process and its number there.
func (iv *interval) key() string { return fmt.Sprintf("%d/%d", iv.pid, iv.client) }

// ledger is every process's records, as intervals.
type ledger struct {
	all       []*interval
	byCluster map[string][]*interval
	byKey     map[string]*interval
	deaths    map[int]int64 // pid of a process that exited to when it did
}

func (l *ledger) dead(pid int) bool { _, ok := l.deaths[pid]; return ok }

// until returns when iv stopped holding its client: the end of its release,
// or, for a client still held by a process that has exited, the process's
// death; math.MaxInt64 for one still held.
func (l *ledger) until(iv *interval) int64 {
	switch {
	case iv.end != 0:
		return iv.end
	case l.dead(iv.pid):
		return l.deaths[iv.pid]
	}
	return math.MaxInt64
}

// servedUntil returns when iv stopped serving: the start of its release, or
// when it stopped holding.
func (l *ledger) servedUntil(iv *interval) int64 {
	if iv.releaseStart != 0 {
		return iv.releaseStart
	}
	return l.until(iv)
}

// readLedger reads the ledgers of every process of the group. A process
// counts as dead only if it had exited before its ledger was read, so that
// its ledger is complete.
func (g *group) readLedger() (*ledger, error) {
	l := &ledger{byCluster: map[string][]*interval{}, byKey: map[string]*interval{}, deaths: map[int]int64{}}
	for _, pr := range g.allProcs() {
		if pr.exited() {
			l.deaths[pr.pid] = pr.diedAt.UnixNano()
		}
		if err := l.read(pr.ledger); err != nil {
			return nil, err
		}
	}
	for _, ivs := range l.byCluster {
		slices.SortFunc(ivs, func(a, b *interval) int { return compareInt64(a.start, b.start) })
	}
	return l, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (l *ledger) read(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil // the process has not built anything yet
	}
	if err != nil {
		return err
	}
	defer f.Close()
	open := map[int64]*interval{} // by client number
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // EOF, or a line being written: read it next time
		}
		fs := strings.Fields(line)
		if len(fs) != 6 {
			return fmt.Errorf("%s: malformed record %q", path, line)
		}
		t, err1 := strconv.ParseInt(fs[0], 10, 64)
		pid, err2 := strconv.Atoi(fs[2])
		client, err3 := strconv.ParseInt(fs[5], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return fmt.Errorf("%s: malformed record %q", path, line)
		}
		event, cluster := fs[3], fs[4]
		iv := open[client]
		if event == "build-start" {
			iv = &interval{identity: fs[1], pid: pid, cluster: cluster, client: client, start: t}
			open[client] = iv
			l.all = append(l.all, iv)
			l.byKey[iv.key()] = iv
			l.byCluster[cluster] = append(l.byCluster[cluster], iv)
			continue
		}
		if iv == nil {
			return fmt.Errorf("%s: %s of client %d, never built", path, event, client)
		}
		switch event {
		case "build-end":
			iv.built = t
		case "release-start":
			iv.releaseStart = t
		case "release-end", "build-fail":
			iv.end = t
			delete(open, client)
		default:
			return fmt.Errorf("%s: unknown event %q", path, event)
		}
	}
	return nil
}

// overlaps returns every pair of intervals of one cluster, in two different
// processes, that overlap in time: two holders at once.
func (l *ledger) overlaps() []string {
	var bad []string
	for c, ivs := range l.byCluster {
		for i, a := range ivs {
			for _, b := range ivs[i+1:] {
				if a.pid != b.pid && a.start < l.until(b) && b.start < l.until(a) {
					bad = append(bad, fmt.Sprintf("cluster %s: %s (pid %d) holds %s..%s and %s (pid %d) holds %s..%s",
						c, a.identity, a.pid, stamp(a.start), stamp(l.until(a)), b.identity, b.pid, stamp(b.start), stamp(l.until(b))))
				}
			}
		}
	}
	slices.Sort(bad)
	return bad
}

func stamp(ns int64) string {
	if ns == math.MaxInt64 {
		return "now"
	}
	return time.Unix(0, ns).UTC().Format("15:04:05.000000")
}

// unowned returns the cluster-seconds of [from, to] during which a cluster
// of clusters had no client serving it anywhere.
func (l *ledger) unowned(clusters []string, from, to time.Time) float64 {
	lo, hi := from.UnixNano(), to.UnixNano()
	var total int64
	for _, c := range clusters {
		type span struct{ a, b int64 }
		var spans []span
		for _, iv := range l.byCluster[c] {
			if iv.built == 0 {
				continue
			}
			a, b := max(iv.built, lo), min(l.servedUntil(iv), hi)
			if a < b {
				spans = append(spans, span{a, b})
			}
		}
		slices.SortFunc(spans, func(x, y span) int { return compareInt64(x.a, y.a) })
		covered, cur := int64(0), lo
		for _, s := range spans {
			a := max(s.a, cur)
			if s.b > a {
				covered += s.b - a
				cur = s.b
			}
		}
		total += (hi - lo) - covered
	}
	return float64(total) / 1e9
}

// lastOf returns the interval of cluster c that identity started last
// before the time before, or nil.
func (l *ledger) lastOf(c, identity string, before int64) *interval {
	var last *interval
	for _, iv := range l.byCluster[c] {
		if iv.identity == identity && iv.start < before {
			last = iv
		}
	}
	return last
}

// durations summarises a sample.
type durations []time.Duration

func (d durations) String() string {
	if len(d) == 0 {
		return "none"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return fmt.Sprintf("n=%d min=%v median=%v p90=%v max=%v", len(s),
		s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond),
		s[len(s)*9/10].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

func (d durations) max() time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

func (d durations) min() time.Duration {
	m := time.Duration(math.MaxInt64)
	for _, x := range d {
		m = min(m, x)
	}
	return m
}
