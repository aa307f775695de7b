package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterregistry/clusterregistry/shard"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// Timings of every replica: short, so that the package stays within its
// time budget. The drain timeout is well under LeaseDuration-RenewDeadline.
const (
	leaseDuration = 3 * time.Second
	renewDeadline = 2 * time.Second
	retryPeriod   = 500 * time.Millisecond
	drainTimeout  = 200 * time.Millisecond
	syncInterval  = 5 * time.Second
)

// status is what cmd/shardreplica writes to its status file.
type status struct {
	Time     time.Time        `json:"time"`
	PID      int              `json:"pid"`
	Stopped  bool             `json:"stopped"`
	Shard    shard.Status     `json:"shard"`
	Registry int              `json:"registry"`
	Requests map[string]int64 `json:"requests"`
}

// group is a set of replica processes of one shard group over one shared
// source of n clusters, reaching the hub each through a Proxy of its own.
type group struct {
	t        *testing.T
	name     string
	dir      string
	clusters []string
	hub      *hubCluster
	extra    []string // more flags for every replica

	mu      sync.Mutex // protects the fields below
	proxies map[string]*localcluster.Proxy
	current map[string]*proc // the latest process of each identity
	procs   []*proc          // every process ever started
}

// proc is one replica process.
type proc struct {
	identity string
	pid      int
	ledger   string
	status   string
	log      string
	started  time.Time

	done   chan struct{} // closed once the process has exited and was reaped
	diedAt time.Time     // read after done: when the test saw it exit
	err    error         // read after done
}

func newGroup(t *testing.T, name string, clusters int, extra ...string) *group {
	t.Helper()
	g := &group{
		t:       t,
		name:    name,
		dir:     t.TempDir(),
		hub:     startHub(t),
		extra:   extra,
		proxies: map[string]*localcluster.Proxy{},
		current: map[string]*proc{},
	}
	for i := range clusters {
		g.clusters = append(g.clusters, fmt.Sprintf("c-%04d", i))
	}
	g.extra = append([]string{"-clusters", strconv.Itoa(clusters)}, g.extra...)
	// Nothing outlives the test: every process is killed and reaped, then
	// every proxy closed.
	t.Cleanup(g.stopAll)
	return g
}

func identity(i int) string { return fmt.Sprintf("replica-%d", i) }

func identities(is ...int) []string {
	ids := make([]string, len(is))
	for k, i := range is {
		ids[k] = identity(i)
	}
	return ids
}

// proxy returns the identity's own path to the hub.
func (g *group) proxy(id string) *localcluster.Proxy {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.proxies[id]
	if p == nil {
		var err error
		p, err = localcluster.NewProxy(g.hub.cluster.APIServerAddr())
		if err != nil {
			g.t.Fatalf("proxy: %v", err)
		}
		g.proxies[id] = p
	}
	return p
}

// start starts a replica process of identity id, with more flags if any.
func (g *group) start(id string, flags ...string) *proc {
	g.t.Helper()
	p := g.proxy(id)
	g.mu.Lock()
	n := len(g.procs)
	g.mu.Unlock()
	pr := &proc{
		identity: id,
		ledger:   filepath.Join(g.dir, fmt.Sprintf("ledger-%03d-%s", n, id)),
		status:   filepath.Join(g.dir, fmt.Sprintf("status-%03d-%s.json", n, id)),
		log:      filepath.Join(g.dir, fmt.Sprintf("log-%03d-%s", n, id)),
		done:     make(chan struct{}),
	}
	args := append([]string{
		"-identity", id,
		"-group", g.name,
		"-namespace", "default",
		"-server", "https://" + p.Addr(),
		"-ca-file", g.hub.caFile,
		"-token-file", g.hub.tokenFile,
		"-tls-server-name", "localhost",
		"-lease-duration", leaseDuration.String(),
		"-renew-deadline", renewDeadline.String(),
		"-retry-period", retryPeriod.String(),
		"-drain-timeout", drainTimeout.String(),
		"-interval", syncInterval.String(),
		"-ledger", pr.ledger,
		"-status", pr.status,
		"-v",
	}, g.extra...)
	args = append(args, flags...)
	if err := pr.run(args); err != nil {
		g.t.Fatalf("start %s: %v", id, err)
	}
	g.mu.Lock()
	g.current[id] = pr
	g.procs = append(g.procs, pr)
	g.mu.Unlock()
	return pr
}

// run starts the process. Pdeathsig kills it if the test binary dies; it
// fires when the thread that started the child exits, so the goroutine that
// starts and reaps it keeps its thread locked until the child is gone.
func (pr *proc) run(args []string) error {
	logf, err := os.Create(pr.log)
	if err != nil {
		return err
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd := exec.Command(replicaBin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		pr.started = time.Now()
		err := cmd.Start()
		_ = logf.Close()
		if err != nil {
			started <- err
			return
		}
		pr.pid = cmd.Process.Pid
		started <- nil
		pr.err = cmd.Wait()
		pr.diedAt = time.Now()
		close(pr.done)
	}()
	return <-started
}

func (pr *proc) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

func (pr *proc) signal(sig syscall.Signal) {
	if !pr.exited() {
		_ = syscall.Kill(pr.pid, sig)
	}
}

// stop sends SIGTERM to the latest process of id and waits for a clean
// exit.
func (g *group) stop(id string) *proc {
	g.t.Helper()
	return g.stopProc(g.proc(id))
}

// stopProc sends SIGTERM to pr and waits for a clean exit.
func (g *group) stopProc(pr *proc) *proc {
	g.t.Helper()
	id := pr.identity
	pr.signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(leaseDuration + 10*time.Second):
		g.t.Fatalf("%s (pid %d) did not stop within %v of SIGTERM", id, pr.pid, leaseDuration+10*time.Second)
	}
	if pr.err != nil {
		g.t.Errorf("%s (pid %d) stopped with %v; log:\n%s", id, pr.pid, pr.err, tail(pr.log))
	}
	g.forget(pr)
	return pr
}

// kill sends SIGKILL and waits until the process is reaped.
func (g *group) kill(id string) *proc {
	g.t.Helper()
	pr := g.proc(id)
	pr.signal(syscall.SIGKILL)
	<-pr.done
	g.forget(pr)
	return pr
}

func (g *group) forget(pr *proc) {
	g.mu.Lock()
	if g.current[pr.identity] == pr {
		delete(g.current, pr.identity)
	}
	g.mu.Unlock()
}

func (g *group) proc(id string) *proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	pr := g.current[id]
	if pr == nil {
		g.t.Fatalf("no process of %s runs", id)
	}
	return pr
}

func (g *group) stopAll() {
	g.mu.Lock()
	procs := slices.Clone(g.procs)
	proxies := g.proxies
	g.proxies = nil
	g.mu.Unlock()
	for _, pr := range procs {
		if pr.exited() {
			continue
		}
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL) // its process group
		<-pr.done
	}
	for _, p := range proxies {
		_ = p.Close()
	}
	// SHARD_E2E_KEEP=dir keeps the ledgers, statuses and logs for a look.
	if keep := os.Getenv("SHARD_E2E_KEEP"); keep != "" {
		dst := filepath.Join(keep, g.name)
		if err := os.CopyFS(dst, os.DirFS(g.dir)); err != nil {
			g.t.Logf("keeping %s: %v", g.dir, err)
		}
	}
	for _, pr := range procs {
		if b, err := os.ReadFile(pr.log); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
			g.t.Errorf("%s (pid %d) found a data race; its log is kept below", pr.identity, pr.pid)
		}
	}
	if g.t.Failed() {
		for _, pr := range procs {
			g.t.Logf("log of %s (pid %d):\n%s", pr.identity, pr.pid, tail(pr.log))
		}
	}
}

// tail returns the end of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 6000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// readStatus returns the last status the process wrote.
func (pr *proc) readStatus() (status, error) {
	var st status
	b, err := os.ReadFile(pr.status)
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

// allProcs returns every process started, in order.
func (g *group) allProcs() []*proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.procs)
}

// predict returns the owner of every cluster in the view of ids.
func (g *group) predict(ids []string) map[string]string {
	rs := make([]shard.Replica, len(ids))
	for i, id := range ids {
		rs[i] = shard.Replica{Identity: id, Weight: shard.DefaultWeight}
	}
	v := shard.NewView(rs...)
	out := make(map[string]string, len(g.clusters))
	for _, c := range g.clusters {
		out[c] = v.Owner(c)
	}
	return out
}

// steady is a moment when the group served every cluster as predicted.
type steady struct {
	at      time.Time
	holders map[string]string    // cluster to identity, from the ledgers
	clients map[string]*interval // cluster to the client that serves it
}

// waitSteady polls until the replicas ids run and agree on their view, wait
// for nothing, and the ledgers show every cluster held by exactly one live
// process, the one the view of ids predicts, with its build finished. It
// fails the test after timeout.
func (g *group) waitSteady(ids []string, timeout time.Duration) steady {
	g.t.Helper()
	want := g.predict(ids)
	deadline := time.Now().Add(timeout)
	var why error
	for {
		at := time.Now()
		clients, err := g.checkSteady(ids, want)
		if err == nil {
			s := steady{at: at, holders: map[string]string{}, clients: clients}
			for c, iv := range clients {
				s.holders[c] = iv.identity
			}
			return s
		}
		why = err
		if time.Now().After(deadline) {
			g.t.Fatalf("replicas %v not steady within %v: %v", ids, timeout, why)
		}
		time.Sleep(100 * time.Millisecond) // a poll interval, not a wait for an outcome
	}
}

func (g *group) checkSteady(ids []string, want map[string]string) (map[string]*interval, error) {
	for _, id := range ids {
		g.mu.Lock()
		pr := g.current[id]
		g.mu.Unlock()
		if pr == nil || pr.exited() {
			return nil, fmt.Errorf("%s does not run", id)
		}
		st, err := pr.readStatus()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		s := st.Shard
		switch {
		case st.PID != pr.pid:
			return nil, fmt.Errorf("%s: no status of pid %d yet", id, pr.pid)
		case !s.Serving:
			return nil, fmt.Errorf("%s: not serving", id)
		case !slices.Equal(viewIDs(s.View), sorted(ids)):
			return nil, fmt.Errorf("%s: view %v", id, viewIDs(s.View))
		case len(s.WaitingFor) > 0 || s.Waiting > 0:
			return nil, fmt.Errorf("%s: waits for %v (%d clusters)", id, s.WaitingFor, s.Waiting)
		case st.Registry != s.Owned || s.Held != s.Owned:
			return nil, fmt.Errorf("%s: registry %d, owned %d, held %d", id, st.Registry, s.Owned, s.Held)
		}
	}
	l, err := g.readLedger()
	if err != nil {
		return nil, err
	}
	holders := map[string]*interval{}
	for _, c := range g.clusters {
		var open []*interval
		for _, iv := range l.byCluster[c] {
			if iv.end == 0 && !l.dead(iv.pid) {
				open = append(open, iv)
			}
		}
		if len(open) != 1 {
			return nil, fmt.Errorf("cluster %s held by %d processes", c, len(open))
		}
		iv := open[0]
		if iv.built == 0 || iv.releaseStart != 0 {
			return nil, fmt.Errorf("cluster %s: %s's client is not built or is being released", c, iv.identity)
		}
		if iv.identity != want[c] {
			return nil, fmt.Errorf("cluster %s held by %s, predicted %s", c, iv.identity, want[c])
		}
		holders[c] = iv
	}
	return holders, nil
}

func viewIDs(v shard.View) []string {
	ids := make([]string, len(v.Replicas))
	for i, r := range v.Replicas {
		ids[i] = r.Identity
	}
	return ids
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval
	}
}

var errNotYet = errors.New("not yet")
