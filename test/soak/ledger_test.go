package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
)

// Bounds of the invariants. The machine is shared and loaded (2 cores, five
// API servers, etcd, the race detector and other engineers' builds), so each
// is set well above what an idle machine shows, and stated here.
const (
	// getBound: a Get or Lease is an atomic load; beyond this, it waited.
	// A Get that a stall of the whole process overlaps (see stallBound) is
	// expected, counted as machine-stalled/slow-get: the load did not wait
	// for the library, its goroutine waited for a CPU.
	getBound = 250 * time.Millisecond
	// stallBound: the watchdog, a goroutine that wakes every stallTick,
	// woke this much later than it asked: for that long the process ran
	// none of its goroutines on time (the machine or the Go scheduler was
	// saturated, or the garbage collector stopped the world).
	stallBound = 100 * time.Millisecond
	stallTick  = 20 * time.Millisecond
	// requestBound: a request to a cluster with no fault of its own.
	requestBound = 10 * time.Second
	// netGrace: after a path heals or a server is back, its clients may
	// still fail for this long: fail-fast lets one request through every
	// 5s, a probe every 2s closes the breaker, a failed build waits out its
	// backoff (at most 5s), and requests already in flight time out (10s).
	netGrace = 20 * time.Second
	// rotationBound: once a new token is in the source (and nothing else
	// stops the Syncer from seeing it and building with it), the Registry
	// serves it within this bound: the Dir's poll (500ms) and settle
	// (250ms) or the hub's watch, a sync, a build (timeout 5s), and a
	// request already in flight with the old client (10s).
	rotationBound = 20 * time.Second
	// informerGrace: after the hub is back, the Secret source's informer
	// may still be stale: a watch whose connection was black-holed is found
	// dead only by HTTP/2's health check (client-go: 30s without a frame,
	// then a 15s ping), and client-go's reflector then lists and watches
	// again after its backoff (up to 30s). A change written meanwhile shows
	// in the source only then. (Measured: up to 58s in a 30-minute run.)
	informerGrace = 90 * time.Second
	// controlBound: a direct request to an API server, bypassing the proxy
	// and the library, slower than this marks the server as overloaded.
	controlBound = 3 * time.Second
	// syncBound: one sync, whatever is black-holed: the build timeout (5s)
	// and the source timeout of a hub that does not answer, plus margin.
	syncBound = 30 * time.Second
	// handoffBound: a cluster that stays in its source is served again by
	// some replica within this bound once none serves it, unless a fault of
	// its own, of the hub, or an overloaded hub or API server explains it
	// (see ledger.unownedExcused). A killed replica's Lease expires for its
	// peers LeaseDuration after they last saw it renewed; a peer confirms
	// that with a fresh read after its next renewal (RetryPeriod); the
	// peers settle on the new view and see each other's settlement (a Lease
	// write and a watch event, RetryPeriod); then the new owner's Syncer
	// lists and builds (6s: a build's timeout is 5s). A handoff to a
	// restarted replica takes less: the old owner releases, says so in its
	// Lease, and the new one builds.
	handoffBound = leaseDuration + 2*retryPeriod + 6*time.Second
)

// fault is one injected fault: kind, the clusters it disturbs, and when.
type fault struct {
	kind     string
	clusters []string
	start    time.Time
	end      time.Time // zero while it is active; for a rotation, when the new token was written
	detail   string
	token    string // a rotation's new token
}

func (f *fault) on(cluster string) bool { return slices.Contains(f.clusters, cluster) }

// Fault kinds, and the classes of error each one may cause on its clusters.
const (
	kindBlackHole = "black-hole"
	kindDelay     = "delay"
	kindRefuse    = "refuse"
	kindKill      = "kill-restart"
	kindRotate    = "rotate-token"
	kindRewrite   = "rewrite-kubeconfig"
	kindCorrupt   = "corrupt-secret"
	kindHubDown   = "hub-down"
	kindAddRemove = "add-remove-cluster"
	// kindReplicaKill kills a replica of the service (its hub path goes
	// silent, then it is abandoned), then starts a new instance of it.
	kindReplicaKill = "replica-killed"
)

func networkish(kind string) bool {
	return kind == kindBlackHole || kind == kindDelay || kind == kindRefuse || kind == kindKill
}

// ledger records everything the soak sees: faults, requests, latencies,
// errors by cause, violations, recoveries, which replica holds a client of
// which cluster, and how long no replica served one. Its methods are safe
// for concurrent use.
type ledger struct {
	creds *credentials
	begin time.Time
	hub   string // the hub cluster's name: its overload excuses a handoff
	// origin maps a cluster to the names the source it lives in: the
	// hub's faults disturb the clusters listed from Secrets.
	originOf func(cluster string) (origin, target string)

	mu          sync.Mutex // protects everything below
	faults      []*fault
	served      map[string]int
	expected    map[string]int
	violations  map[string]int
	samples     []string
	getLat      []time.Duration
	reqLat      []time.Duration
	recovery    map[string][]time.Duration
	holds       map[string][]*hold   // cluster → the clients held now, of every replica
	lastOwner   map[string]string    // cluster → the replica instance of its last successful build
	handoffs    int                  // successful builds of a cluster by another instance than its last
	gaps        map[string]*gap      // cluster → since when no replica serves it
	gapLens     []time.Duration      // every gap closed
	gapsLong    int                  // gaps longer than handoffBound that a fault excused
	unowned     time.Duration        // sum of gapLens and the gaps still open
	unserved    int                  // reads that no replica served
	shown       map[string]time.Time // token → when the service's source first listed it
	overloads   []*fault             // spans when a cluster's API server did not answer the control probe in time
	stalls      []*fault             // spans when the watchdog woke stallBound late or more
	oddities    []string             // samples of expected errors of no known cause
	logSink     io.Writer            // the Syncer's log lines, with the fault history, for a post-mortem; nil for none
	events      int
	credChecked int
}

func newLedger(creds *credentials, hub string, originOf func(string) (string, string)) *ledger {
	return &ledger{
		creds: creds, begin: time.Now(), hub: hub, originOf: originOf,
		served: map[string]int{}, expected: map[string]int{}, violations: map[string]int{},
		recovery: map[string][]time.Duration{}, holds: map[string][]*hold{}, lastOwner: map[string]string{},
		gaps: map[string]*gap{}, shown: map[string]time.Time{},
	}
}

// startFault records a fault that begins now and returns it, to end it with endFault.
func (l *ledger) startFault(kind string, clusters []string, detail string) *fault {
	f := &fault{kind: kind, clusters: clusters, start: time.Now(), detail: detail}
	l.mu.Lock()
	l.faults = append(l.faults, f)
	l.mu.Unlock()
	l.log(fmt.Sprintf("fault %s %v %s begins", kind, clusters, detail))
	return f
}

func (l *ledger) endFault(f *fault) {
	l.mu.Lock()
	first := f.end.IsZero()
	if first {
		f.end = time.Now()
	}
	l.mu.Unlock()
	if first {
		l.log(fmt.Sprintf("fault %s %v ends", f.kind, f.clusters))
	}
}

// log writes a line to the log sink, if any, with the time since the start.
func (l *ledger) log(line string) {
	line = l.creds.redact(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logSink != nil {
		fmt.Fprintf(l.logSink, "+%s %s\n", time.Since(l.begin).Round(time.Millisecond), line)
	}
}

func (l *ledger) recovered(kind string, d time.Duration) {
	l.mu.Lock()
	l.recovery[kind] = append(l.recovery[kind], d)
	l.mu.Unlock()
}

func (l *ledger) violation(class, format string, args ...any) {
	// Redacted: the details quote errors, which must not spread a leak further.
	msg := l.creds.redact(fmt.Sprintf("%s +%s: %s", class, time.Since(l.begin).Round(time.Millisecond), fmt.Sprintf(format, args...)))
	l.log("VIOLATION " + msg)
	l.mu.Lock()
	l.violations[class]++
	if l.violations[class] <= 50 { // each class keeps its first details, so one burst hides no other
		l.samples = append(l.samples, msg)
	}
	l.mu.Unlock()
}

// checkText counts a violation if s quotes a known credential.
func (l *ledger) checkText(where, s string) {
	l.mu.Lock()
	l.credChecked++
	l.mu.Unlock()
	if cred := l.creds.find(s); cred != "" {
		l.violation("credential-leak", "%s quotes a credential (…%s): %.300s", where, cred[max(0, len(cred)-6):], strings.ReplaceAll(s, cred, "<REDACTED>"))
	}
}

// get records a Get or Lease of cluster, from ts to te.
func (l *ledger) get(cluster string, ts, te time.Time) {
	d := te.Sub(ts)
	l.mu.Lock()
	l.getLat = append(l.getLat, d)
	l.mu.Unlock()
	if d <= getBound {
		return
	}
	if l.stalled(ts, te) {
		l.mu.Lock()
		l.expected["machine-stalled/slow-get"]++
		l.mu.Unlock()
		return
	}
	l.violation("slow-get", "%s: Get or Lease took %s (bound %s) with no stall of the process", cluster, d, getBound)
}

// stall records that the watchdog, asleep from ts, woke at te, stallBound
// or more after it meant to.
func (l *ledger) stall(ts, te time.Time) {
	l.mu.Lock()
	l.stalls = append(l.stalls, &fault{kind: "stall", start: ts, end: te})
	l.mu.Unlock()
	l.log(fmt.Sprintf("process stalled: the watchdog woke %s late", (te.Sub(ts) - stallTick).Round(time.Millisecond)))
}

// stalled reports whether a stall of the process overlaps [ts, te].
func (l *ledger) stalled(ts, te time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.stalls {
		if !f.start.After(te) && !f.end.Before(ts) {
			return true
		}
	}
	return false
}

// request records the outcome of one request to cluster, made by via
// (client, http, worker, build), from ts to te.
func (l *ledger) request(via, cluster string, ts, te time.Time, err error) {
	d := te.Sub(ts)
	if err == nil {
		l.mu.Lock()
		l.served[via]++
		l.reqLat = append(l.reqLat, d)
		l.mu.Unlock()
		if d > requestBound && !l.disturbed(cluster, ts, te, networkish) && !l.overloaded(cluster, ts, te) {
			l.violation("slow-request", "%s %s took %s with no fault of its own (bound %s); faults meanwhile: %s",
				via, cluster, d, requestBound, l.activeFaults(ts, te))
		}
		return
	}
	l.checkText(via+" error", err.Error())
	cause := classify(err)
	if via == "build" && (cause == causeNotOwned || cause == causeCancelled) {
		// The Member refused or cancelled the build: the replica does not
		// own the cluster (any more), or stopped serving.
		l.mu.Lock()
		l.expected["build-"+cause]++
		l.mu.Unlock()
		return
	}
	if cause != causeNotFound && cause != causeNoClient && cause != causeStopped && cause != causeUnauthorized &&
		!l.excused(cause, cluster, ts, te) && l.overloaded(cluster, ts, te) {
		cause = "server-overloaded/" + cause
	}
	if strings.HasPrefix(cause, "server-overloaded/") || l.excused(cause, cluster, ts, te) {
		l.mu.Lock()
		l.expected[cause]++
		if cause == causeOther && len(l.oddities) < 10 {
			l.oddities = append(l.oddities, l.creds.redact(fmt.Sprintf("%s %s: %.300v", via, cluster, err)))
		}
		l.mu.Unlock()
		return
	}
	l.violation("request-failed", "%s %s (%s, %s): %v; faults meanwhile: %s",
		via, cluster, cause, d.Round(time.Millisecond), err, l.activeFaults(ts, te))
}

// Causes of a failed request.
const (
	causeNotFound     = "not-found"
	causeNoClient     = "no-client"
	causeStopped      = "stopped"
	causeUnauthorized = "unauthorized"
	causeUnreachable  = "fail-fast"
	causeTimeout      = "timeout"
	causeRefused      = "refused"
	causeClosed       = "connection-closed"
	causeServer       = "server-error"
	causeNotOwned     = "not-owned"
	causeCancelled    = "cancelled"
	causeOther        = "other"
)

func classify(err error) string {
	var cerr *clusterregistry.ClusterError
	var nerr net.Error
	switch {
	case errors.Is(err, shard.ErrNotOwned):
		return causeNotOwned
	case errors.Is(err, context.Canceled):
		return causeCancelled
	case errors.Is(err, clusterregistry.ErrClusterNotFound):
		return causeNotFound
	case errors.Is(err, clusterregistry.ErrStopped):
		return causeStopped
	case errors.As(err, &cerr):
		return causeNoClient
	case apierrors.IsUnauthorized(err):
		return causeUnauthorized
	case errors.Is(err, clusterregistry.ErrUnreachable):
		return causeUnreachable
	case errors.Is(err, syscall.ECONNREFUSED):
		return causeRefused
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err),
		errors.As(err, &nerr) && nerr.Timeout(), strings.Contains(err.Error(), "Client.Timeout"):
		return causeTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "connection reset"),
		strings.Contains(err.Error(), "client connection lost"), strings.Contains(err.Error(), "server closed"),
		strings.Contains(err.Error(), "broken pipe"):
		return causeClosed
	case apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsTooManyRequests(err),
		apierrors.IsUnexpectedServerError(err):
		return causeServer
	}
	return causeOther
}

// excused says whether a request to cluster from ts to te that failed with
// cause is explained by a fault: the expected errors.
//   - not-found, no-client, stopped: never. Every cluster the soak reads
//     stays in its source from the moment it first had a client.
//   - unauthorized: a token rotation of the cluster, from its start until
//     rotationBound after the service's source first listed the new token
//     (a hub that is down, or an informer that has not caught up yet, holds
//     that back), or after the end of any fault of the cluster's API server
//     that overlapped it (a black hole, say, during which the new client
//     cannot be built); a killed API server (which may refuse tokens while
//     it starts).
//   - anything else (timeouts, refused, closed connections, fail-fast, 5xx):
//     a black hole, delay, refusal or kill of the cluster, until netGrace
//     after it ended.
func (l *ledger) excused(cause, cluster string, ts, te time.Time) bool {
	switch cause {
	case causeNotFound, causeNoClient, causeStopped:
		return false
	case causeUnauthorized:
		return l.rotationWindow(cluster, ts, te) || l.disturbed(cluster, ts, te, func(k string) bool { return k == kindKill })
	}
	return l.disturbed(cluster, ts, te, networkish)
}

// disturbed reports whether a fault of a kind that match accepts was on
// cluster at some point of [ts-netGrace, te].
func (l *ledger) disturbed(cluster string, ts, te time.Time, match func(string) bool) bool {
	_, target := l.originOf(cluster)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.faults {
		if !match(f.kind) || !(f.on(cluster) || f.on(target)) {
			continue
		}
		if !f.start.After(te) && (f.end.IsZero() || !f.end.Add(netGrace).Before(ts)) {
			return true
		}
	}
	return false
}

// overload records that cluster's API server did not answer the control
// probe (direct, with the harness's credential, bypassing the proxy and the
// library) within controlBound, from ts to te.
func (l *ledger) overload(cluster string, ts, te time.Time) {
	l.mu.Lock()
	l.overloads = append(l.overloads, &fault{kind: "overload", clusters: []string{cluster}, start: ts, end: te})
	l.mu.Unlock()
	l.log(fmt.Sprintf("control probe of %s slow or failed for %s", cluster, te.Sub(ts).Round(time.Millisecond)))
}

// overloaded reports whether the control probe of cluster (or of the API
// server it points at) failed or was slow around [ts, te]: then the API
// server itself, or the machine, did not answer, whatever the library did.
func (l *ledger) overloaded(cluster string, ts, te time.Time) bool {
	_, target := l.originOf(cluster)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.overloads {
		if (f.on(cluster) || f.on(target)) && !f.start.After(te.Add(time.Second)) && !f.end.Before(ts.Add(-time.Second)) {
			return true
		}
	}
	return false
}

// quiet reports whether no fault but those that skip accepts touched
// cluster (or the API server it points at, or, for a cluster listed from
// Secrets, the hub) during [ts-netGrace, te]. With the replicas sharing
// the clusters through Leases in the hub, a hub outage touches every
// cluster (no replica serves while it cannot renew its Lease), and so does
// a killed replica (a change of a cluster it owned waits for the handoff).
func (l *ledger) quiet(cluster string, ts, te time.Time, skip func(*fault) bool) bool {
	_, target := l.originOf(cluster)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.faults {
		if skip(f) || !(f.on(cluster) || f.on(target) || f.kind == kindHubDown || f.kind == kindReplicaKill) {
			continue
		}
		grace := netGrace
		if f.kind == kindHubDown {
			grace = informerGrace
		}
		if !f.start.After(te) && (f.end.IsZero() || !f.end.Add(grace).Before(ts)) {
			return false
		}
	}
	return true
}

// slowChange counts a violation if a change of cluster's entry, written at
// since, took d > rotationBound to reach the Registry although nothing
// touched the cluster or its source meanwhile: something else held it up,
// such as another cluster's black hole.
func (l *ledger) slowChange(what, cluster string, self *fault, since time.Time, d time.Duration) {
	if d <= rotationBound || !l.quiet(cluster, since, since.Add(d), func(f *fault) bool { return f == self }) {
		return
	}
	l.violation("slow-change", "%s of %s took %s to reach the Registry (bound %s) with no fault of its own; faults meanwhile: %s",
		what, cluster, d.Round(time.Millisecond), rotationBound, l.activeFaults(since, since.Add(d)))
}

// rotationWindow reports whether [ts, te] falls in the window of a rotation
// of cluster (see excused): from its start until rotationBound after the
// service's source first listed the new token (or a later one), pushed back
// to the end of any fault of the cluster's API server (black hole, delay,
// refusal, kill) that overlaps it, since no client can be built then.
func (l *ledger) rotationWindow(cluster string, ts, te time.Time) bool {
	_, target := l.originOf(cluster)
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range l.faults {
		if r.kind != kindRotate || !(r.on(cluster) || r.on(target)) || r.start.After(te) {
			continue
		}
		// When the source showed this token, or a later rotation's.
		var shown time.Time
		for _, later := range l.faults[i:] {
			if later.kind != kindRotate || !slices.Equal(later.clusters, r.clusters) {
				continue
			}
			if at, ok := l.shown[later.token]; ok && (shown.IsZero() || at.Before(shown)) {
				shown = at
			}
		}
		if shown.IsZero() {
			return true // the source has not listed it yet
		}
		end := shown
		for changed := true; changed; {
			changed = false
			for _, f := range l.faults {
				if !networkish(f.kind) || !(f.on(cluster) || f.on(target)) || f.start.After(end.Add(rotationBound)) ||
					(!f.end.IsZero() && f.end.Before(r.start)) {
					continue
				}
				if f.end.IsZero() {
					return true
				}
				if f.end.After(end) {
					end, changed = f.end, true
				}
			}
		}
		if !end.Add(rotationBound).Before(ts) {
			return true
		}
	}
	return false
}

// setToken records a rotation's new token.
func (l *ledger) setToken(f *fault, token string) {
	l.mu.Lock()
	f.token = token
	l.mu.Unlock()
}

// listed records that the service's source listed token (of some cluster)
// at t, the first time it does.
func (l *ledger) listed(token string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.shown[token]; !ok {
		l.shown[token] = t
	}
}

// activeFaults describes the faults that overlapped [ts, te], for a violation's details.
func (l *ledger) activeFaults(ts, te time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, f := range l.faults {
		if f.start.After(te) || (!f.end.IsZero() && f.end.Add(netGrace).Before(ts)) {
			continue
		}
		end := "active"
		if !f.end.IsZero() {
			end = "ended +" + f.end.Sub(l.begin).Round(time.Millisecond).String()
		}
		out = append(out, fmt.Sprintf("%s%v(+%s, %s)", f.kind, f.clusters, f.start.Sub(l.begin).Round(time.Millisecond), end))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// hold is one client of one cluster held by one replica instance, from
// before its Build starts until after its Release ends (or its Build fails).
type hold struct {
	owner, cluster string
	start          time.Time
}

// holdStart records that owner starts building a client of cluster, and
// counts a violation if another replica instance holds one now: package
// shard promises that the old owner has released before the new one builds.
// The ledger orders the records, and each recorded tenure contains the
// real one, so two that overlap here overlapped for real.
func (l *ledger) holdStart(owner, cluster string) *hold {
	h := &hold{owner: owner, cluster: cluster, start: time.Now()}
	l.mu.Lock()
	var others []string
	for _, o := range l.holds[cluster] {
		if o.owner != owner {
			others = append(others, fmt.Sprintf("%s (since +%s)", o.owner, o.start.Sub(l.begin).Round(time.Millisecond)))
		}
	}
	l.holds[cluster] = append(l.holds[cluster], h)
	l.mu.Unlock()
	if len(others) > 0 {
		l.violation("double-owner", "%s starts building %s while %s still hold a client of it; faults meanwhile: %s",
			owner, cluster, strings.Join(others, ", "), l.activeFaults(h.start, h.start))
	}
	return h
}

// holdBuilt records that h's build succeeded: a handoff if another instance
// built the cluster last.
func (l *ledger) holdBuilt(h *hold) {
	l.mu.Lock()
	last := l.lastOwner[h.cluster]
	if last != "" && last != h.owner {
		l.handoffs++
	}
	l.lastOwner[h.cluster] = h.owner
	l.mu.Unlock()
	if last != h.owner {
		l.log(fmt.Sprintf("%s serves %s (last built by %q)", h.owner, h.cluster, last))
	}
}

// holdEnd records that h's client was released, or its build failed.
func (l *ledger) holdEnd(h *hold) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holds[h.cluster] = slices.DeleteFunc(l.holds[h.cluster], func(x *hold) bool { return x == h })
	if len(l.holds[h.cluster]) == 0 {
		delete(l.holds, h.cluster)
	}
}

// held describes the clients held now, for a check after every replica stopped.
func (l *ledger) held() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range sortedKeys(l.holds) {
		for _, h := range l.holds[c] {
			out = append(out, h.owner+" holds "+c)
		}
	}
	return out
}

// gap is a time during which no replica serves a cluster.
type gap struct {
	since    time.Time
	checked  time.Time // when it was last judged against handoffBound
	long     bool      // longer than handoffBound, counted in gapsLong
	reported bool      // counted as a violation
}

// coverage records whether some replica serves cluster at now (the
// monitor's samples). A gap is a violation once it has lasted handoffBound
// with nothing to explain it (unownedExcused) during that last stretch: the
// bound starts again when an explanation ends. Judged once a second.
func (l *ledger) coverage(cluster string, served bool, now time.Time) {
	l.mu.Lock()
	g := l.gaps[cluster]
	switch {
	case served && g != nil:
		d := now.Sub(g.since)
		l.gapLens = append(l.gapLens, d)
		l.unowned += d
		delete(l.gaps, cluster)
		l.mu.Unlock()
		l.log(fmt.Sprintf("%s served again after %s", cluster, d.Round(time.Millisecond)))
		return
	case !served && g == nil:
		l.gaps[cluster] = &gap{since: now}
		l.mu.Unlock()
		l.log(fmt.Sprintf("%s served by no replica", cluster))
		return
	case served || g.reported || now.Sub(g.since) <= handoffBound || now.Sub(g.checked) < time.Second:
		l.mu.Unlock()
		return
	}
	g.checked = now
	if !g.long {
		g.long = true
		l.gapsLong++
	}
	since := g.since
	l.mu.Unlock()
	if l.unownedExcused(cluster, now.Add(-handoffBound), now) {
		return
	}
	l.mu.Lock()
	g.reported = true
	l.gapsLong--
	l.mu.Unlock()
	l.violation("unowned", "no replica has served %s for %s, the last %s of it with no fault to explain it; faults meanwhile: %s",
		cluster, now.Sub(since).Round(time.Millisecond), handoffBound, l.activeFaults(since, now))
}

// endCoverage closes the gaps still open at now, for the report.
func (l *ledger) endCoverage(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, g := range l.gaps {
		l.unowned += now.Sub(g.since)
		l.gapLens = append(l.gapLens, now.Sub(g.since))
		delete(l.gaps, c)
	}
}

// unownedExcused reports whether something other than the handoff itself
// may have kept cluster unserved during [from, to]: a fault of the cluster
// or of the API server it points at (any kind: a new owner cannot build a
// cluster it cannot reach, whose token is revoked, or whose entry is broken)
// or of the hub (no replica serves while it cannot renew its Lease), until
// netGrace after it ended; a rotation of its token until its window ends
// (see rotationWindow); or a control probe of its API server or of the hub
// that failed or was slow, within netGrace.
func (l *ledger) unownedExcused(cluster string, from, to time.Time) bool {
	if l.rotationWindow(cluster, from, to) {
		return true
	}
	_, target := l.originOf(cluster)
	l.mu.Lock()
	defer l.mu.Unlock()
	within := func(f *fault) bool {
		return !f.start.After(to) && (f.end.IsZero() || !f.end.Add(netGrace).Before(from))
	}
	for _, f := range l.faults {
		if (f.on(cluster) || f.on(target) || f.kind == kindHubDown) && within(f) {
			return true
		}
	}
	for _, f := range l.overloads {
		if (f.on(cluster) || f.on(target) || f.on(l.hub)) && within(f) {
			return true
		}
	}
	return false
}

// unservedRead counts a read that no replica served.
func (l *ledger) unservedRead() {
	l.mu.Lock()
	l.unserved++
	l.mu.Unlock()
}

func (l *ledger) event() {
	l.mu.Lock()
	l.events++
	l.mu.Unlock()
}

func (l *ledger) totalViolations() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.violations {
		n += v
	}
	return n
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s p99.9=%s max=%s", len(s),
		p(0.5), p(0.9), p(0.99), p(0.999), s[len(s)-1])
}

// report writes the soak's report.
func (l *ledger) report(w io.Writer, seed uint64, duration time.Duration, ownership, extra []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(w, "SOAK REPORT seed=%d duration=%s (replay: make soak SEED=%d DURATION=%s)\n", seed, duration, seed, duration)
	kinds := map[string]int{}
	for _, f := range l.faults {
		kinds[f.kind]++
	}
	fmt.Fprintf(w, "faults injected: %d\n", len(l.faults))
	for _, k := range sortedKeys(kinds) {
		fmt.Fprintf(w, "  %-20s %d\n", k, kinds[k])
	}
	total := 0
	for _, n := range l.served {
		total += n
	}
	fmt.Fprintf(w, "requests served: %d\n", total)
	for _, k := range sortedKeys(l.served) {
		fmt.Fprintf(w, "  %-20s %d\n", k, l.served[k])
	}
	fmt.Fprintf(w, "events received: %d; texts checked for credentials: %d\n", l.events, l.credChecked)
	var overloaded time.Duration
	for _, f := range l.overloads {
		overloaded += f.end.Sub(f.start)
	}
	fmt.Fprintf(w, "control probes slow or failed (server or machine overloaded): %d, %s in all\n", len(l.overloads), overloaded.Round(time.Second))
	var stalled, longest time.Duration
	for _, f := range l.stalls {
		late := f.end.Sub(f.start) - stallTick
		stalled += late
		longest = max(longest, late)
	}
	fmt.Fprintf(w, "process stalls (the watchdog %s or more late): %d, %s in all, the longest %s\n",
		stallBound, len(l.stalls), stalled.Round(time.Millisecond), longest.Round(time.Millisecond))
	fmt.Fprintf(w, "errors, expected (caused by an active fault on that cluster):\n")
	for _, k := range sortedKeys(l.expected) {
		fmt.Fprintf(w, "  %-20s %d\n", k, l.expected[k])
	}
	nv := 0
	for _, n := range l.violations {
		nv += n
	}
	fmt.Fprintf(w, "violations: %d\n", nv)
	for _, k := range sortedKeys(l.violations) {
		fmt.Fprintf(w, "  %-20s %d\n", k, l.violations[k])
	}
	fmt.Fprintf(w, "latency of Get/Lease: %s\n", percentiles(l.getLat))
	fmt.Fprintf(w, "latency of successful requests: %s\n", percentiles(l.reqLat))
	fmt.Fprintf(w, "recovery time per fault kind:\n")
	for _, k := range sortedKeys(l.recovery) {
		fmt.Fprintf(w, "  %-20s %s\n", k, percentiles(l.recovery[k]))
	}
	fmt.Fprintf(w, "ownership (%d replicas, package shard):\n", len(replicaIDs))
	fmt.Fprintf(w, "  handoffs (a cluster built by another replica instance than the last): %d\n", l.handoffs)
	fmt.Fprintf(w, "  unowned cluster-seconds (the %d members served by no replica, sampled every 100 ms): %.1f\n",
		members, l.unowned.Seconds())
	fmt.Fprintf(w, "  gaps: %s; longer than the handoff bound (%s) but explained by a fault: %d\n",
		percentiles(l.gapLens), handoffBound, l.gapsLong)
	fmt.Fprintf(w, "  reads that no replica served (during a gap or a handoff): %d\n", l.unserved)
	for _, o := range ownership {
		fmt.Fprintln(w, o)
	}
	for _, e := range extra {
		fmt.Fprintln(w, e)
	}
	if len(l.oddities) > 0 {
		fmt.Fprintf(w, "expected errors of cause %q (samples):\n", causeOther)
		for _, s := range l.oddities {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	if len(l.samples) > 0 {
		fmt.Fprintf(w, "violation details (the first 50 of each class):\n")
		for _, s := range l.samples {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
