// Command shardreplica is one replica of a sharded service, for the tests of
// package shard against a real hub (test/shard): a separate OS process, so
// that a kill is a real kill.
//
// It runs a shard.Member and a clusterregistry.Syncer over
// member.Source(src), where src lists the same N clusters in every process
// ("c-0000", "c-0001", ...; each with a dummy config that nothing dials), and
// a cheap builder gated by shard.Wrap. The builder appends every build and
// release to a ledger file, one line per record:
//
//	<unix nanoseconds> <identity> <pid> <event> <cluster> <client>
//
// where event is build-start, build-end, build-fail, release-start or
// release-end, and client numbers the builds of the process (a release
// names the client it releases). Every process runs on one machine, so the wall clock orders
// the records of all of them. A build-start is stamped before the build
// starts and a release-end after the release ends, so each recorded interval
// lies within the time the replica really held the client.
//
// It writes its state to a status file (JSON, replaced atomically) every
// 200 ms and whenever the Member's status changes: the shard.Status, the
// number of clusters in its Registry, and its own hub requests counted by
// verb and resource. SIGTERM or SIGINT stops it cleanly: the Member
// releases every client and deletes its Lease.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
)

type flags struct {
	identity, group, namespace     string
	server, caFile, tokenFile, sni string
	leaseDuration, renewDeadline   time.Duration
	retryPeriod, drainTimeout      time.Duration
	interval, buildDelay           time.Duration
	clusters                       int
	delayFirst                     delays
	delayUpdates, watchLag         time.Duration
	inFlight                       time.Duration
	ledger, status                 string
	verbose                        bool
}

func main() {
	var f flags
	flag.StringVar(&f.identity, "identity", "", "replica identity (required)")
	flag.StringVar(&f.group, "group", "e2e", "group of replicas")
	flag.StringVar(&f.namespace, "namespace", "default", "namespace of the Leases")
	flag.StringVar(&f.server, "server", "", "hub URL, https://host:port (required)")
	flag.StringVar(&f.caFile, "ca-file", "", "PEM of the hub's CA (required)")
	flag.StringVar(&f.tokenFile, "token-file", "", "file holding the hub bearer token (required)")
	flag.StringVar(&f.sni, "tls-server-name", "", "server name to verify the hub's certificate against")
	flag.DurationVar(&f.leaseDuration, "lease-duration", 3*time.Second, "shard LeaseDuration")
	flag.DurationVar(&f.renewDeadline, "renew-deadline", 2*time.Second, "shard RenewDeadline")
	flag.DurationVar(&f.retryPeriod, "retry-period", 500*time.Millisecond, "shard RetryPeriod")
	flag.DurationVar(&f.drainTimeout, "drain-timeout", 200*time.Millisecond, "Syncer drain timeout")
	flag.DurationVar(&f.interval, "interval", 5*time.Second, "Syncer periodic interval")
	flag.DurationVar(&f.buildDelay, "build-delay", time.Millisecond, "time each Build takes")
	flag.IntVar(&f.clusters, "clusters", 300, "number of clusters in the shared source")
	flag.StringVar(&f.ledger, "ledger", "", "ledger file, appended to (required)")
	flag.StringVar(&f.status, "status", "", "status file, replaced (required)")
	f.delayFirst = delays{}
	flag.Var(f.delayFirst, "delay-first", "fault, repeatable: `verb-resource=duration`, such as list-leases=2s: hold this replica's first request of that kind this long, as a slow hub or a failed first try would")
	flag.DurationVar(&f.delayUpdates, "delay-updates", 0, "fault: hold every update of a Lease this long (a slow hub)")
	flag.DurationVar(&f.watchLag, "watch-lag", 0, "fault: deliver every byte of a watch this late (a lagging watch)")
	flag.DurationVar(&f.inFlight, "in-flight", 0, "every 100 ms, lease every served cluster's client for this long, as requests in flight would (the Syncer drains them before a release)")
	flag.BoolVar(&f.verbose, "v", false, "log the Member's and the Syncer's messages to stderr")
	flag.Parse()
	if f.identity == "" || f.server == "" || f.caFile == "" || f.tokenFile == "" || f.ledger == "" || f.status == "" {
		fmt.Fprintln(os.Stderr, "shardreplica: -identity, -server, -ca-file, -token-file, -ledger and -status are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "shardreplica:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) error {
	ca, err := os.ReadFile(f.caFile)
	if err != nil {
		return err
	}
	token, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return err
	}
	counter := newRequestCounter(f.delayFirst)
	counter.delayUpdates, counter.watchLag = f.delayUpdates, f.watchLag
	hub := &rest.Config{
		Host:            f.server,
		BearerToken:     strings.TrimSpace(string(token)),
		TLSClientConfig: rest.TLSClientConfig{CAData: ca, ServerName: f.sni},
		QPS:             200,
		Burst:           400,
		WrapTransport:   counter.wrap,
	}
	client, err := coordinationv1.NewForConfig(hub)
	if err != nil {
		return err
	}

	ledger, err := openLedger(f.ledger, f.identity)
	if err != nil {
		return err
	}
	defer ledger.close()

	log := logr.Discard()
	if f.verbose {
		log = funcr.New(func(prefix, args string) {
			fmt.Fprintf(os.Stderr, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
		}, funcr.Options{})
	}
	obs := &observer{changed: make(chan struct{}, 1)}
	member, err := shard.New(shard.Config{
		Client:        client,
		Namespace:     f.namespace,
		Group:         f.group,
		Identity:      f.identity,
		LeaseDuration: f.leaseDuration,
		RenewDeadline: f.renewDeadline,
		RetryPeriod:   f.retryPeriod,
		Logger:        log,
		Observer:      obs,
	})
	if err != nil {
		return err
	}

	syncer, err := clusterregistry.NewSyncer(member.Source(source(f.clusters)), shard.Wrap(member, ledger.builder(f.buildDelay)),
		clusterregistry.WithInterval(f.interval),
		clusterregistry.WithDrainTimeout(f.drainTimeout),
		clusterregistry.WithConcurrency(16),
		clusterregistry.WithLogger(log))
	if err != nil {
		return err
	}

	st := &statusWriter{path: f.status, member: member, reg: syncer.Registry(), counter: counter, pid: os.Getpid()}
	var wg sync.WaitGroup
	// The status writer stops after the Member and the Syncer, so that the
	// last status shows the replica stopped.
	stCtx, stStop := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { st.loop(stCtx, obs.changed) })
	var runErr error
	var inner sync.WaitGroup
	inner.Go(func() {
		if err := member.Run(ctx); err != nil {
			runErr = err
		}
	})
	inner.Go(func() { _ = syncer.Run(ctx) })
	if f.inFlight > 0 {
		inner.Go(func() { requests(ctx, syncer.Registry(), f.inFlight) })
	}
	inner.Wait()
	st.write(true)
	stStop()
	wg.Wait()
	return runErr
}

// source lists n clusters, the same in every process.
func source(n int) clusterregistry.ClusterSource {
	clusters := make([]clusterregistry.Cluster, n)
	for i := range clusters {
		name := ClusterName(i)
		clusters[i] = clusterregistry.Cluster{
			Name:   name,
			Config: &rest.Config{Host: "https://" + name + ".invalid"},
		}
	}
	return clusterregistry.NewMemorySource(clusters...)
}

// ClusterName is the name of the i-th cluster of the shared source.
func ClusterName(i int) string { return fmt.Sprintf("c-%04d", i) }

// client is what the cheap builder builds: a pointer, so that every build is
// a distinct client to shard.Wrap.
type client struct {
	cluster string
	id      int64
}

// ledger appends records to a file opened with O_APPEND; each record is one
// write(2), so lines of concurrent writers never interleave.
type ledger struct {
	next     atomic.Int64 // numbers the builds
	f        *os.File
	identity string
	pid      string
}

func openLedger(path, identity string) (*ledger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &ledger{f: f, identity: identity, pid: strconv.Itoa(os.Getpid())}, nil
}

func (l *ledger) record(event, cluster string, id int64) {
	line := strconv.FormatInt(time.Now().UnixNano(), 10) + " " + l.identity + " " + l.pid + " " + event + " " + cluster + " " + strconv.FormatInt(id, 10) + "\n"
	if _, err := l.f.WriteString(line); err != nil {
		fmt.Fprintln(os.Stderr, "shardreplica: ledger:", err)
		os.Exit(3) // a ledger with holes would prove nothing
	}
}

func (l *ledger) close() { _ = l.f.Close() }

func (l *ledger) builder(delay time.Duration) clusterregistry.Builder[*client] {
	return clusterregistry.BuilderFuncs[*client]{
		BuildFunc: func(ctx context.Context, c clusterregistry.Cluster) (*client, error) {
			id := l.next.Add(1)
			l.record("build-start", c.Name, id)
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					l.record("build-fail", c.Name, id)
					return nil, ctx.Err()
				}
			}
			l.record("build-end", c.Name, id)
			return &client{cluster: c.Name, id: id}, nil
		},
		ReleaseFunc: func(cl *client) {
			l.record("release-start", cl.cluster, cl.id)
			l.record("release-end", cl.cluster, cl.id)
		},
	}
}

// requests leases the client of every served cluster every 100 ms and
// returns each lease d later, until ctx ends; it then returns every lease
// at once.
func requests(ctx context.Context, reg *clusterregistry.Registry[*client], d time.Duration) {
	var mu sync.Mutex // protects held
	held := map[*clusterregistry.Lease[*client]]*time.Timer{}
	defer func() {
		mu.Lock()
		for l, t := range held {
			if t.Stop() {
				l.Release()
			}
		}
		mu.Unlock()
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, name := range reg.Snapshot().Names() {
			l, err := reg.Lease(name)
			if err != nil {
				continue // gone meanwhile
			}
			mu.Lock()
			held[l] = time.AfterFunc(d, func() {
				mu.Lock()
				delete(held, l)
				mu.Unlock()
				l.Release()
			})
			mu.Unlock()
		}
	}
}

// observer wakes the status writer whenever the Member's status changes.
type observer struct{ changed chan struct{} }

func (o *observer) StatusChanged(shard.Status) {
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

func (o *observer) Handoff(shard.Handoff) {}

// requestCounter counts the hub requests by verb and resource.
// It can also hold the first request of a kind, as a slow hub would.
type requestCounter struct {
	delays       delays // read-only
	delayUpdates time.Duration
	watchLag     time.Duration

	mu     sync.Mutex // protects counts
	counts map[string]int64
}

func newRequestCounter(d delays) *requestCounter {
	return &requestCounter{delays: d, counts: map[string]int64{}}
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		res, _ := resource(req.URL.Path)
		key := verb(req) + " " + res
		c.mu.Lock()
		c.counts[key]++
		first := c.counts[key] == 1
		c.mu.Unlock()
		d := c.delays[verb(req)+"-"+res]
		if !first {
			d = 0
		}
		if verb(req) == "update" {
			d += c.delayUpdates
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-req.Context().Done():
				t.Stop()
				return nil, req.Context().Err()
			}
		}
		resp, err := rt.RoundTrip(req)
		if err == nil && c.watchLag > 0 && verb(req) == "watch" {
			resp.Body = newLaggingBody(resp.Body, c.watchLag)
		}
		return resp, err
	})
}

// laggingBody delivers every chunk of a response body lag after it
// arrived: a delay line, not a slower reader, so the lag does not grow.
type laggingBody struct {
	inner  io.ReadCloser
	lag    time.Duration
	chunks chan chunk
	done   chan struct{} // closed by Close
	once   sync.Once
	buf    []byte // of the chunk being read out
	err    error  // of the body, once buf is read out
}

type chunk struct {
	data []byte
	at   time.Time
	err  error
}

func newLaggingBody(inner io.ReadCloser, lag time.Duration) *laggingBody {
	b := &laggingBody{inner: inner, lag: lag, chunks: make(chan chunk, 1024), done: make(chan struct{})}
	// Reads the body as it comes until it ends; Close ends it by closing
	// the body underneath.
	go b.pump()
	return b
}

func (b *laggingBody) pump() {
	for {
		p := make([]byte, 32*1024)
		n, err := b.inner.Read(p)
		select {
		case b.chunks <- chunk{data: p[:n], at: time.Now(), err: err}:
		case <-b.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (b *laggingBody) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		var c chunk
		select {
		case c = <-b.chunks:
		case <-b.done:
			return 0, io.EOF
		}
		if wait := time.Until(c.at.Add(b.lag)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-b.done:
				t.Stop()
				return 0, io.EOF
			}
		}
		b.buf, b.err = c.data, c.err
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *laggingBody) Close() error {
	b.once.Do(func() { close(b.done) })
	return b.inner.Close()
}

// delays is a flag.Value of verb-resource=duration pairs.
type delays map[string]time.Duration

func (d delays) String() string { return fmt.Sprint(map[string]time.Duration(d)) }

func (d delays) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want verb-resource=duration", s)
	}
	dur, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	d[k] = dur
	return nil
}

func (c *requestCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// verb names a request as the API server's audit log would.
func verb(req *http.Request) string {
	_, named := resource(req.URL.Path)
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1":
			return "watch"
		case named:
			return "get"
		}
		return "list"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(req.Method)
}

// resource returns the resource of a namespaced API path, and whether the
// path names one object: /apis/coordination.k8s.io/v1/namespaces/default/leases/x
// is "leases", true.
func resource(path string) (string, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			return parts[i+2], i+3 < len(parts)
		}
	}
	return path, false
}

// Status is what the status file holds; test/shard reads it.
type Status struct {
	Time     time.Time        `json:"time"`
	PID      int              `json:"pid"`
	Stopped  bool             `json:"stopped"`
	Shard    shard.Status     `json:"shard"`
	Registry int              `json:"registry"`
	Requests map[string]int64 `json:"requests"`
}

type statusWriter struct {
	path    string
	member  *shard.Member
	reg     *clusterregistry.Registry[*client]
	counter *requestCounter
	pid     int
}

func (w *statusWriter) loop(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		w.write(false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

func (w *statusWriter) write(stopped bool) {
	b, err := json.Marshal(Status{
		Time:     time.Now(),
		PID:      w.pid,
		Stopped:  stopped,
		Shard:    w.member.Status(),
		Registry: w.reg.Snapshot().Len(),
		Requests: w.counter.snapshot(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shardreplica: status:", err)
		return
	}
	tmp := w.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "shardreplica: status:", err)
		return
	}
	if err := os.Rename(tmp, filepath.Clean(w.path)); err != nil {
		fmt.Fprintln(os.Stderr, "shardreplica: status:", err)
	}
}
