package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

// waitTimeout bounds each wait for the registry to show a step's effect.
const waitTimeout = time.Minute

func (d *demo) addCluster(ctx context.Context) error {
	d.source.Upsert(d.describe("cluster-3", false, "region", "ap-south"))
	d.say("source.Upsert(cluster-3). The source tells the Syncer at once; it builds one new client,")
	d.say("with no lock held, and publishes the new state. The other clients are untouched.")
	if err := d.waitFor(ctx, "cluster-3 to be served", func(s clusterregistry.Snapshot[*clusterregistry.Client]) bool {
		info, ok := s.Cluster("cluster-3")
		return ok && (info.Serving || info.Err != nil)
	}); err != nil {
		return err
	}
	d.printState(ctx)
	return nil
}

func (d *demo) rotateToken(ctx context.Context) error {
	reg := d.syncer.Registry()
	c2 := d.env.Cluster("cluster-2")
	before, _ := reg.Snapshot().Cluster("cluster-2")

	// A long request (a log stream, a watch) holds its client with a lease.
	lease, err := reg.Lease("cluster-2")
	if err != nil {
		return err
	}
	defer lease.Release()
	// Meanwhile, the dashboard keeps being asked for cluster-2's pods.
	stopTraffic := d.traffic("/api/pods?cluster=cluster-2")

	oldToken := c2.Token()
	newToken, err := c2.IssueToken(ctx)
	if err != nil {
		stopTraffic()
		return err
	}
	if err := c2.UseToken(newToken); err != nil {
		stopTraffic()
		return err
	}
	d.source.Upsert(d.describe("cluster-2", false, "region", "us-east"))
	d.say("Issued cluster-2 a new token and put it in the source. The Syncer builds a new client")
	d.say("before the old one goes, so cluster-2 never reads \"not found\".")
	if err := d.waitFor(ctx, "cluster-2's new client", func(s clusterregistry.Snapshot[*clusterregistry.Client]) bool {
		info, _ := s.Cluster("cluster-2")
		return info.BuiltGeneration != before.BuiltGeneration
	}); err != nil {
		stopTraffic()
		return err
	}
	d.printState(ctx)

	d.say("The lease still holds the old client, and it still works: %s.", d.countPods(ctx, lease.Client()))
	lease.Release()
	d.say("Lease released: only now does the Syncer release the old client (closing its connections).")

	d.say("Revoking the old token (the API server notices within about 10s)...")
	if err := c2.RevokeToken(ctx, oldToken); err != nil {
		stopTraffic()
		return err
	}
	ok, failed := stopTraffic()
	d.say("A request with the old token now gets: %s", d.tryToken(ctx, c2.ConfigForToken(oldToken)))
	d.say("Through the dashboard during the whole rotation: %d requests for cluster-2, %d failed.", ok+failed, failed)
	return nil
}

func (d *demo) cutOff(ctx context.Context) error {
	reg := d.syncer.Registry()
	c3 := d.env.Cluster("cluster-3")
	before, _ := reg.Snapshot().Cluster("cluster-3")

	c3.BlackHole()
	token, err := c3.IssueToken(ctx)
	if err != nil {
		return err
	}
	if err := c3.UseToken(token); err != nil {
		return err
	}
	d.source.Upsert(d.describe("cluster-3", false, "region", "ap-south"))
	d.say("cluster-3's network path now swallows every packet, and its token changed in the source.")
	d.say("The Syncer builds it a new client; the build gets no answer and gives up after %v.", buildTimeout)
	if err := d.waitFor(ctx, "cluster-3's build to fail", func(s clusterregistry.Snapshot[*clusterregistry.Client]) bool {
		return s.Err("cluster-3") != nil
	}); err != nil {
		return err
	}
	d.printState(ctx)
	d.say("cluster-3 keeps its last good client, with the error beside it; no other cluster waited.")

	if err := c3.Heal(); err != nil {
		return err
	}
	d.say("The path is healed. The Syncer retries after its backoff...")
	if err := d.waitFor(ctx, "cluster-3 to recover", func(s clusterregistry.Snapshot[*clusterregistry.Client]) bool {
		info, _ := s.Cluster("cluster-3")
		return info.Err == nil && info.BuiltGeneration != before.BuiltGeneration
	}); err != nil {
		return err
	}
	d.printState(ctx)
	return nil
}

func (d *demo) removeCluster(ctx context.Context) error {
	d.source.Delete("cluster-2")
	d.say("source.Delete(cluster-2). The Syncer drops it and releases its client once no request uses it.")
	if err := d.waitFor(ctx, "cluster-2 to go", func(s clusterregistry.Snapshot[*clusterregistry.Client]) bool {
		_, ok := s.Cluster("cluster-2")
		return !ok
	}); err != nil {
		return err
	}
	d.printState(ctx)
	status, body := d.get(ctx, "/api/pods?cluster=cluster-2")
	d.say("GET %s/api/pods?cluster=cluster-2 -> %d %s", d.url, status, body)
	return nil
}

// say prints one line of narration.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "  "+format+"\n", args...)
}

// waitFor polls the registry until cond holds, ctx ends or waitTimeout
// passes.
func (d *demo) waitFor(ctx context.Context, what string, cond func(clusterregistry.Snapshot[*clusterregistry.Client]) bool) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond(d.syncer.Registry().Snapshot()) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// printState prints what the registry shows: its generation, its clusters
// and their errors, and what each client answers.
func (d *demo) printState(ctx context.Context) {
	snap := d.syncer.Registry().Snapshot()
	def, err := snap.DefaultName()
	if err != nil {
		def = "none (" + err.Error() + ")"
	}
	fmt.Fprintf(d.out, "  Registry: generation %d, %d clusters, default %s\n", snap.Generation(), snap.Len(), def)
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	var errs []string
	for info := range snap.Clusters() {
		mark, version, client, pods := "", "-", "no client", "-"
		if info.Default {
			mark = "default"
		}
		if info.Serving {
			c, _ := snap.Get(info.Name)
			version = c.ServerVersion().GitVersion
			client = fmt.Sprintf("client from generation %d", info.BuiltGeneration)
			pods = d.leaseAndCount(ctx, info.Name)
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\t%s\n", info.Name, mark, version, client, pods, labels(info.Labels))
		if info.Err != nil {
			errs = append(errs, info.Err.Error())
		}
	}
	_ = tw.Flush()
	for _, e := range errs {
		fmt.Fprintf(d.out, "    error: %s\n", e)
	}
}

// leaseAndCount counts the pods of a cluster through the registry, holding a
// lease on its client for the call, as a request handler does.
func (d *demo) leaseAndCount(ctx context.Context, name string) string {
	lease, err := d.syncer.Registry().Lease(name)
	if err != nil {
		return err.Error()
	}
	defer lease.Release()
	return d.countPods(ctx, lease.Client())
}

func (d *demo) countPods(ctx context.Context, c *clusterregistry.Client) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pods, err := c.Kubernetes().CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
	switch {
	case ctx.Err() != nil:
		return "no answer in 2s"
	case err != nil:
		return "error: " + err.Error()
	}
	if len(pods.Items) == 1 {
		return "1 pod in shop"
	}
	return fmt.Sprintf("%d pods in shop", len(pods.Items))
}

// tryToken reports what the API server answers a request made with cfg.
func (d *demo) tryToken(ctx context.Context, cfg *rest.Config) string {
	cs, done, err := clientset(cfg)
	if err != nil {
		return err.Error()
	}
	defer done()
	return describeAnswer(ctx, cs)
}

func describeAnswer(ctx context.Context, cs kubernetes.Interface) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := cs.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
	switch {
	case err == nil:
		return "200 OK"
	case apierrors.IsUnauthorized(err):
		return "401 Unauthorized"
	}
	return err.Error()
}

// traffic requests path from the dashboard in a loop until the returned
// func is called; that func waits for the loop and returns how many
// requests succeeded and failed.
func (d *demo) traffic(path string) func() (ok, failed int64) {
	var nOK, nFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 10 * time.Second}
	wg.Go(func() {
		defer hc.CloseIdleConnections()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := hc.Get(d.url + path)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			if err == nil && resp.StatusCode == http.StatusOK {
				nOK.Add(1)
			} else {
				nFailed.Add(1)
			}
			time.Sleep(20 * time.Millisecond) // a steady trickle, not a load test
		}
	})
	var once sync.Once
	return func() (int64, int64) {
		once.Do(func() { close(stop); wg.Wait() })
		return nOK.Load(), nFailed.Load()
	}
}

// get requests path from the dashboard and returns the status and body.
func (d *demo) get(ctx context.Context, path string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, err.Error()
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func labels(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
