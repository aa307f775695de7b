package soak

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

const (
	members = 5 // member clusters; one more is the hub
	readers = 6 // goroutines that hammer Get, Lease and the HTTP server
)

// TestSoak runs three replicas of a service, sharing five member clusters
// through package shard with their Leases in a hub, under random
// overlapping faults for -soak.duration, checks every invariant the whole
// time, and prints the report. It fails on any violation, and when
// goroutines, connections or the API servers' watches are not back at their
// baseline after the replicas stop.
func TestSoak(t *testing.T) {
	cfg, err := loadSettings()
	require.NoError(t, err)
	if cfg.duration <= 0 {
		t.Skip("the soak runs when -soak.duration or CLUSTERREGISTRY_SOAK_DURATION is set (make soak)")
	}
	fmt.Printf("soak: seed %d, duration %s (replay: make soak SEED=%d DURATION=%s)\n", cfg.seed, cfg.duration, cfg.seed, cfg.duration)

	env := localcluster.StartT(t, members+1)
	all := env.Clusters()
	hub, memberClusters := all[members], all[:members]
	creds := &credentials{}
	w, err := newWorld(t.Context(), env, memberClusters, hub, creds)
	require.NoError(t, err)
	originOf := func(cluster string) (string, string) {
		if e := w.entry(cluster); e != nil {
			return e.origin, e.target.Name()
		}
		return "", cluster
	}
	led := newLedger(creds, hub.Name(), originOf)
	if cfg.report != "" {
		// Beside the report: the replicas' logs and the fault history, one timeline.
		f, err := os.Create(cfg.report + ".log")
		require.NoError(t, err)
		defer f.Close()
		led.logSink = f
	}
	proxies := map[string]string{}
	for _, c := range all {
		u, err := url.Parse(c.Server())
		require.NoError(t, err)
		proxies[u.Port()] = c.Name()
	}
	admins := map[string]kubernetes.Interface{}
	for _, c := range all {
		admins[c.Name()], err = w.adminClient(c)
		require.NoError(t, err)
	}
	defer w.closeIdle()

	// Baselines, before the replicas start.
	baseWatches := watches(t, admins)
	baseTCP, _ := proxyTCP(proxies)
	baseFDs := countFDs()
	ignoreBefore := goleak.IgnoreCurrent()
	baseGoroutines := runtime.NumGoroutine()

	g := newGroup(w, led)
	stopped := false
	defer func() {
		if !stopped {
			_ = g.stop()
			g.closeProxies()
		}
	}()
	for slot := range replicaIDs {
		require.NoError(t, g.start(slot))
	}
	names := w.memberNames()
	// Every member is served by the replica that owns it before the readers
	// start: from here on, each one stays in its source, so a gap longer
	// than the handoff bound with no fault to explain it is a violation.
	var why string
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, why = g.steady(names); ok {
			break
		}
		require.Less(t, time.Since(start), 2*time.Minute, "the replicas do not settle: %s", why)
	}

	ctx, cancel := context.WithTimeout(t.Context(), cfg.duration)
	defer cancel()
	var load sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: readers}}
	for i := range readers {
		rng := rand.New(rand.NewPCG(cfg.seed, uint64(i)+1))
		load.Go(func() {
			for ctx.Err() == nil {
				g.read(ctx, names[rng.IntN(len(names))], rng.IntN(3), hc)
				sleep(ctx, time.Duration(10+rng.IntN(40))*time.Millisecond)
			}
		})
	}
	// The coverage monitor runs until every fault has healed.
	mctx, stopMonitor := context.WithCancel(t.Context())
	var monitor sync.WaitGroup
	monitor.Go(func() { g.monitor(mctx, names) })
	in := &injector{w: w, led: led, g: g, rng: rand.New(rand.NewPCG(cfg.seed, 0)), maxActive: 4, busy: map[string]bool{}}
	begin := time.Now()
	load.Go(func() { progress(ctx, led, begin) })
	load.Go(func() { watchdog(ctx, led, clock.RealClock{}) })
	for name, admin := range admins {
		load.Go(func() { control(ctx, led, name, admin) })
	}
	in.run(ctx) // returns once every fault has healed and every killed replica runs again
	load.Wait()
	stopMonitor()
	monitor.Wait()
	hc.CloseIdleConnections()
	ran := time.Since(begin)

	// Healed: every member is served again, with the token its source
	// holds, and by the replica that owns it.
	settle := time.Now()
	var lagging []string
	for time.Since(settle) < 2*time.Minute {
		lagging = lagging[:0]
		for _, m := range memberClusters {
			c, ok := g.client(m.Name())
			if !ok || c.Config().BearerToken != w.entry(m.Name()).token {
				lagging = append(lagging, m.Name())
			}
		}
		if ok, why := g.steady(names); !ok {
			lagging = append(lagging, "(not steady: "+why+")")
		}
		if len(lagging) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(lagging) > 0 {
		led.violation("no-recovery", "two minutes after the last fault healed, %v still lag their source", lagging)
	}
	ownership := g.ownership(names)
	stopped = true
	if err := g.stop(); err != nil {
		led.violation("stop", "%v", err)
	}
	ownership = append(ownership, g.countsLine())
	// Stopped cleanly, every replica has released every client and deleted
	// its Lease.
	if held := led.held(); len(held) > 0 {
		led.violation("held-after-stop", "%v", held)
	}
	lctx, lcancel := context.WithTimeout(t.Context(), 30*time.Second)
	leases, err := admins[hub.Name()].CoordinationV1().Leases(leaseNamespace).List(lctx, metav1.ListOptions{})
	lcancel()
	if err != nil {
		in.harnessFailed("list the Leases: %v", err)
	} else if len(leases.Items) > 0 {
		var left []string
		for _, l := range leases.Items {
			left = append(left, l.Name)
		}
		led.violation("lease-left", "Leases left after every replica stopped: %v", left)
	}
	g.proxyPorts(proxies)

	// Back to baseline: the API servers' watches, the connections through
	// the proxies, goroutines.
	var extra []string
	var nowWatches map[string]int
	var nowTCP int
	var tcpDetails []string
	deadline := time.Now().Add(time.Minute)
	for {
		w.closeIdle()
		for _, s := range g.allInstances() {
			utilnet.CloseIdleConnectionsFor(s.hubHTTP.Transport)
		}
		nowWatches = watches(t, admins)
		nowTCP, tcpDetails = proxyTCP(proxies)
		if fmt.Sprint(nowWatches) == fmt.Sprint(baseWatches) && nowTCP <= baseTCP || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	extra = append(extra, fmt.Sprintf("watches of ConfigMaps, Secrets and Leases served by the API servers: before %v, after %v", baseWatches, nowWatches))
	if fmt.Sprint(nowWatches) != fmt.Sprint(baseWatches) {
		led.violation("leak", "API-server watches before %v, after %v", baseWatches, nowWatches)
	}
	extra = append(extra, fmt.Sprintf("TCP connections through the proxies: before %d, after %d", baseTCP, nowTCP))
	if nowTCP > baseTCP {
		// Who holds them: every goroutine's stack, for the record.
		if f, err := os.CreateTemp("", "soak-goroutines-*.txt"); err == nil {
			_ = pprof.Lookup("goroutine").WriteTo(f, 1)
			_ = f.Close()
			extra = append(extra, "goroutine stacks at the connection leak: "+f.Name())
		}
		led.violation("leak", "TCP connections through the proxies: before %d, after %d: %s", baseTCP, nowTCP, strings.Join(tcpDetails, ", "))
	}
	g.closeProxies()
	var leakErr error
	for range 100 {
		w.closeIdle()
		if leakErr = goleak.Find(append(leakOptions(), ignoreBefore,
			// The harness's own: the waiter of a restarted API server, the
			// accept loop of a proxy that listens again after a refusal.
			// (The proxies' connections are counted above.)
			goleak.IgnoreAnyFunction("github.com/clusterregistry/clusterregistry/test/localcluster.startProcess.func1"),
			goleak.IgnoreAnyFunction("github.com/clusterregistry/clusterregistry/test/localcluster.(*Proxy).acceptLoop"),
			// Idle connections of the harness's own admin transports.
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		)...); leakErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	extra = append(extra, fmt.Sprintf("goroutines: before %d, after %d; file descriptors: before %d, after %d (the harness's direct admin connections included)",
		baseGoroutines, runtime.NumGoroutine(), baseFDs, countFDs()))
	if leakErr != nil {
		led.violation("leak", "goroutines left by the replicas: %v", leakErr)
	}
	var logLines int64
	for _, s := range g.allInstances() {
		logLines += s.logLines.Load()
	}
	extra = append(extra, fmt.Sprintf("replica instances: %s", g.instanceNames()))
	extra = append(extra, fmt.Sprintf("log lines of the Members, Syncers and fleets checked: %d; ran %s with faults", logLines, ran.Round(time.Second)))
	in.mu.Lock()
	for _, h := range in.harness {
		extra = append(extra, "harness failure (not the library's): "+h)
	}
	harness := len(in.harness)
	in.mu.Unlock()

	var buf bytes.Buffer
	led.report(&buf, cfg.seed, cfg.duration, ownership, extra)
	fmt.Print(buf.String())
	if cfg.report != "" {
		require.NoError(t, os.WriteFile(cfg.report, buf.Bytes(), 0o644))
	}
	if n := led.totalViolations(); n > 0 {
		t.Errorf("%d violations (seed %d); see the report above", n, cfg.seed)
	}
	if harness > 0 {
		t.Errorf("%d harness failures (seed %d); see the report above", harness, cfg.seed)
	}
}

// watches returns, per cluster, how many watches of ConfigMaps, Secrets and
// Leases in one namespace its API server serves (apiserver_longrunning_requests,
// read with the harness's own credential); the API server's own informers
// watch across namespaces and do not count. -1 when the metrics cannot be read.
func watches(t *testing.T, admins map[string]kubernetes.Interface) map[string]int {
	out := map[string]int{}
	for name, admin := range admins {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		n, err := localcluster.Watches(ctx, admin, "namespace", "configmaps", "secrets", "leases")
		cancel()
		if err != nil {
			n = -1
		}
		out[name] = n
	}
	return out
}

func countFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

// proxyTCP counts this process's TCP connections to or from a proxy (a
// cluster's, or a replica's own in front of the hub's): the service's
// connections and the proxies' own ends of them. The harness's admin
// clients go to the API servers directly and do not count.
// It returns the count and a description of each.
func proxyTCP(ports map[string]string) (int, []string) {
	inodes := map[string]bool{}
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	var details []string
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) <= 9 || fields[3] == "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			local, remote := hexPort(fields[1]), hexPort(fields[2])
			if c := ports[local] + ports[remote]; c != "" {
				n++
				details = append(details, fmt.Sprintf("%s %s→%s state %s", c, local, remote, fields[3]))
			}
		}
		_ = f.Close()
	}
	return n, details
}

// hexPort turns the ADDR:PORT of /proc/net/tcp (port in hex) into a decimal port.
func hexPort(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return ""
	}
	return strconv.FormatUint(p, 10)
}

// progress prints a line every 30 seconds, so a long soak shows it is alive.
func progress(ctx context.Context, led *ledger, begin time.Time) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		led.mu.Lock()
		served, faults := 0, len(led.faults)
		for _, n := range led.served {
			served += n
		}
		led.mu.Unlock()
		fmt.Printf("soak: +%s faults %d, requests served %d, violations %d\n",
			time.Since(begin).Round(time.Second), faults, served, led.totalViolations())
	}
}

// watchdog sleeps stallTick at a time and records in the ledger every
// wake-up stallBound or more late: then this process ran none of its
// goroutines on time, and a slow Get meanwhile is the machine's doing.
func watchdog(ctx context.Context, led *ledger, clk clock.Clock) {
	ts := clk.Now()
	t := clk.NewTimer(stallTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if te := clk.Now(); te.Sub(ts) >= stallTick+stallBound {
			led.stall(ts, te)
		}
		ts = clk.Now() // before the timer is armed again
		t.Reset(stallTick)
	}
}

// control probes one cluster's API server once a second, directly with the
// harness's own credential (no proxy, no library), and records in the
// ledger every probe that fails or takes longer than controlBound: a
// request of the library's that fails or is slow meanwhile is the server's
// or the machine's doing (expected, counted as server-overloaded), not the
// library's. A probe during an injected fault fails too; that changes nothing.
func control(ctx context.Context, led *ledger, name string, admin kubernetes.Interface) {
	for ctx.Err() == nil {
		ts := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := admin.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		te := time.Now()
		if ctx.Err() != nil {
			return
		}
		if err != nil || te.Sub(ts) > controlBound {
			led.overload(name, ts, te)
		}
		sleep(ctx, time.Second)
	}
}
