package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure Start. The zero value starts one cluster.
type Options struct {
	// Clusters is how many clusters to start, named cluster-1, cluster-2, ...
	// Default 1.
	Clusters int

	// Dir holds the data, logs and kubeconfig files. Empty means a new
	// temporary directory, which Stop removes; a given Dir is kept.
	Dir string

	// Binaries are the server binaries. Empty means EnsureBinaries, which may
	// build them first.
	Binaries Binaries

	// Progress receives a line for each step (builds, starts). Nil discards.
	Progress io.Writer

	// ReadyTimeout bounds the wait for each server to become ready.
	// Default 2 minutes.
	ReadyTimeout time.Duration
}

// Environment is a set of running clusters over one etcd. Start makes one;
// its owner must call Stop. Its methods are safe for concurrent use.
type Environment struct {
	dir          string
	ownDir       bool
	bins         Binaries
	readyTimeout time.Duration
	progress     io.Writer

	etcd    *process
	etcdURL string

	clusters []*Cluster

	kubeconfigMu sync.Mutex // serialises writes of the kubeconfig files

	stopOnce sync.Once
	stopErr  error
}

var (
	liveMu sync.Mutex // protects live
	live   = map[*Environment]struct{}{}
)

// StopAll stops every Environment of this process that is not stopped yet.
// Call it from TestMain after m.Run, so that a test that forgot Stop leaves
// nothing running; it returns the joined errors of the Stops.
func StopAll() error {
	liveMu.Lock()
	envs := make([]*Environment, 0, len(live))
	for e := range live {
		envs = append(envs, e)
	}
	liveMu.Unlock()
	var errs []error
	for _, e := range envs {
		errs = append(errs, e.Stop())
	}
	return errors.Join(errs...)
}

// Start starts etcd and opts.Clusters API servers, each behind its own Proxy,
// writes the kubeconfig files, and returns once every server is ready and
// every cluster has a valid token. It blocks for seconds (about 3 for one
// cluster, 12 for six on 2 cores), plus the time of EnsureBinaries when
// opts.Binaries is empty. ctx bounds the start only: the servers run until
// Stop. On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Environment, err error) {
	if opts.Clusters == 0 {
		opts.Clusters = 1
	}
	if opts.Clusters < 0 {
		return nil, fmt.Errorf("clusters must not be negative, got %d", opts.Clusters)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Binaries == (Binaries{}) {
		bins, err := EnsureBinaries(ctx, opts.Progress)
		if err != nil {
			return nil, err
		}
		opts.Binaries = bins
	}

	e := &Environment{bins: opts.Binaries, readyTimeout: opts.ReadyTimeout, progress: opts.Progress}
	if opts.Dir == "" {
		e.dir, err = os.MkdirTemp("", "localcluster-")
		if err != nil {
			return nil, err
		}
		e.ownDir = true
	} else {
		e.dir, err = filepath.Abs(opts.Dir)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return nil, err
		}
	}
	liveMu.Lock()
	live[e] = struct{}{}
	liveMu.Unlock()
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()

	begin := time.Now()
	if err := e.startEtcd(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.progress, "localcluster: etcd ready at %s (%s)\n", e.etcdURL, time.Since(begin).Round(time.Millisecond))

	for i := range opts.Clusters {
		c, err := newCluster(e, fmt.Sprintf("cluster-%d", i+1))
		if err != nil {
			return nil, err
		}
		e.clusters = append(e.clusters, c)
	}
	errs := make([]error, len(e.clusters))
	var wg sync.WaitGroup
	for i, c := range e.clusters {
		wg.Go(func() { errs[i] = c.firstStart(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := e.writeKubeconfigs(); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.progress, "localcluster: %d clusters ready in %s; kubeconfig %s\n", len(e.clusters), time.Since(begin).Round(time.Millisecond), e.KubeconfigPath())
	return e, nil
}

// StartT starts an Environment of n clusters for a test, as Start does with
// progress going to t.Log, and stops it in t.Cleanup. It fails the test at
// once if the binaries cannot be built or a server does not start.
func StartT(t testing.TB, n int) *Environment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e, err := Start(ctx, Options{Clusters: n, Progress: logWriter{t}})
	if err != nil {
		t.Fatalf("localcluster: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("localcluster: stop: %v", err)
		}
	})
	return e
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Dir returns the directory of the data, logs and kubeconfig files.
func (e *Environment) Dir() string { return e.dir }

// Binaries returns the server binaries the Environment runs.
func (e *Environment) Binaries() Binaries { return e.bins }

// Clusters returns the clusters, in name order. The slice is the caller's.
func (e *Environment) Clusters() []*Cluster {
	return append([]*Cluster(nil), e.clusters...)
}

// Cluster returns the cluster called name, or nil.
func (e *Environment) Cluster(name string) *Cluster {
	for _, c := range e.clusters {
		if c.name == name {
			return c
		}
	}
	return nil
}

// KubeconfigPath returns the kubeconfig file that has every cluster as a
// context (named as the cluster; the current context is the first cluster),
// with each cluster's current token and its CA inline. Token changes made
// with UseToken or RotateToken rewrite it.
func (e *Environment) KubeconfigPath() string { return filepath.Join(e.dir, "kubeconfig") }

// Stop kills every API server and etcd, waits for them to exit, closes the
// proxies, and removes the directory if Start created it. It blocks for
// about a second. Calls after the first return the first's result.
func (e *Environment) Stop() error {
	e.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, c := range e.clusters {
			wg.Go(c.close)
		}
		wg.Wait()
		if e.etcd != nil {
			e.etcd.kill()
		}
		if e.ownDir {
			e.stopErr = os.RemoveAll(e.dir)
		}
		liveMu.Lock()
		delete(live, e)
		liveMu.Unlock()
	})
	return e.stopErr
}

func (e *Environment) startEtcd(ctx context.Context) error {
	dataDir := filepath.Join(e.dir, "etcd")
	var lastErr error
	// A port found free can be taken by someone else before etcd binds it;
	// then etcd exits at once and gets other ports.
	for range 3 {
		clientPort, err := freePort()
		if err != nil {
			return err
		}
		peerPort, err := freePort()
		if err != nil {
			return err
		}
		clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
		args := []string{
			"--name=localcluster",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=localcluster=" + peerURL,
			"--initial-cluster-state=new",
			"--log-level=warn",
			// The data is thrown away with the environment; fsync only
			// slows the tests down.
			"--unsafe-no-fsync",
		}
		p, err := startProcess("etcd", e.bins.Etcd, args, filepath.Join(e.dir, "etcd.log"))
		if err != nil {
			return err
		}
		if lastErr = waitEtcd(ctx, p, clientURL, e.readyTimeout); lastErr == nil {
			e.etcd, e.etcdURL = p, clientURL
			return nil
		}
		p.kill()
		_ = os.RemoveAll(dataDir)
		if !strings.Contains(lastErr.Error(), "address already in use") {
			return lastErr
		}
	}
	return lastErr
}

func waitEtcd(ctx context.Context, p *process, url string, timeout time.Duration) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	return poll(ctx, p, timeout, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
			return fmt.Errorf("etcd /health: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

// poll calls check every 100ms until it succeeds, the process p exits, or
// timeout passes.
func poll(ctx context.Context, p *process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = check(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v (log: %s)", p.name, timeout, last, p.logPath)
		case <-tick.C:
		}
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeKubeconfigs writes every cluster's own kubeconfig and the combined
// one, each through a temporary file so that a reader never sees half.
func (e *Environment) writeKubeconfigs() error {
	e.kubeconfigMu.Lock()
	defer e.kubeconfigMu.Unlock()
	all := clientcmdapi.NewConfig()
	for _, c := range e.clusters {
		one := clientcmdapi.NewConfig()
		c.addToKubeconfig(one)
		one.CurrentContext = c.name
		if err := writeKubeconfig(one, c.KubeconfigPath()); err != nil {
			return err
		}
		c.addToKubeconfig(all)
	}
	if len(e.clusters) > 0 {
		all.CurrentContext = e.clusters[0].name
	}
	return writeKubeconfig(all, e.KubeconfigPath())
}

func writeKubeconfig(cfg *clientcmdapi.Config, path string) error {
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
