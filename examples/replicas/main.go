// Command replicas runs three replicas of a service that share the clusters
// of one source, with package shard: each replica builds and serves only the
// clusters it owns, the replicas agree through one Lease each in a hub
// cluster, and a replica that stops hands its clusters to the others, which
// build them only once it has released them.
//
//	cd examples && go run ./replicas
//
// It starts four local clusters (cluster-1 is also the hub), runs
// replica-a, replica-b and replica-c in this process, stops replica-b and
// starts it again, printing every handoff with its reason. The first run
// builds etcd and kube-apiserver (minutes); later runs take seconds.
package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := localcluster.Start(ctx, localcluster.Options{Clusters: 4, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
	defer env.Stop()
	hub, err := kubernetes.NewForConfig(env.Cluster("cluster-1").AdminConfig())
	if err == nil {
		err = run(ctx, os.Stdout, hub, env.KubeconfigPath())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
}

// run shows three replicas sharing the clusters of the kubeconfig at path,
// with their Leases in hub.
func run(ctx context.Context, out io.Writer, hub kubernetes.Interface, path string) error {
	g := &group{out: out, hub: hub, path: path, running: map[string]*replica{}}
	defer g.stopAll()
	ids := []string{"replica-a", "replica-b", "replica-c"}
	for _, id := range ids {
		if err := g.start(ctx, id); err != nil {
			return err
		}
	}
	if err := g.settle(ctx, "three replicas"); err != nil {
		return err
	}
	fmt.Fprintln(out, "\n--- replica-b stops: it releases its clusters and deletes its Lease")
	g.stop("replica-b")
	if err := g.settle(ctx, "replica-b gone"); err != nil {
		return err
	}
	fmt.Fprintln(out, "\n--- replica-b starts again: the others release its share first")
	if err := g.start(ctx, "replica-b"); err != nil {
		return err
	}
	return g.settle(ctx, "replica-b back")
}

// group is the replicas of this process.
type group struct {
	out  io.Writer
	hub  kubernetes.Interface
	path string

	mu      sync.Mutex // serializes output
	running map[string]*replica
}

type replica struct {
	m    *shard.Member
	reg  *clusterregistry.Registry[*clusterregistry.Client]
	stop func()
}

// start runs one replica: its Member, and a Syncer over the shard of the
// source that the Member gives it.
func (g *group) start(ctx context.Context, id string) error {
	m, err := shard.New(shard.Config{
		Client:    g.hub.CoordinationV1(),
		Namespace: "default",
		Group:     "replicas-example",
		Identity:  id,
		// Short, for a demonstration; the defaults are 15s, 10s and 2s.
		LeaseDuration: 6 * time.Second,
		RenewDeadline: 4 * time.Second,
		RetryPeriod:   time.Second,
	})
	if err != nil {
		return err
	}
	src, err := kubeconfig.New(kubeconfig.WithPath(g.path))
	if err != nil {
		return err
	}
	s, err := clusterregistry.NewSyncer(m.Source(src), shard.Wrap(m, clusterregistry.Builder[*clusterregistry.Client](clusterregistry.ClientBuilder{})),
		clusterregistry.WithDrainTimeout(time.Second))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	sub := s.Registry().Subscribe()
	wg.Go(func() { _ = m.Run(ctx) })
	wg.Go(func() { _ = s.Run(ctx) })
	wg.Go(func() { g.print(ctx, id, sub) })
	g.running[id] = &replica{m: m, reg: s.Registry(), stop: func() { cancel(); wg.Wait(); sub.Close() }}
	return nil
}

// print writes the replica's Added and Removed events, with their reasons.
func (g *group) print(ctx context.Context, id string, sub *clusterregistry.Subscription) {
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if ev.Replay || (ev.Type != clusterregistry.EventAdded && ev.Type != clusterregistry.EventRemoved) {
			continue
		}
		reason := ev.Reason
		if reason == "" {
			reason = "(the source)"
		}
		g.mu.Lock()
		fmt.Fprintf(g.out, "%-9s %-7s %-9s %s\n", id, ev.Type, ev.Name, reason)
		g.mu.Unlock()
	}
}

func (g *group) stop(id string) {
	g.running[id].stop()
	delete(g.running, id)
}

func (g *group) stopAll() {
	for id := range g.running {
		g.stop(id)
	}
}

// settle waits until every cluster is served by exactly the replica that
// the running replicas' view gives it, then prints who serves what.
func (g *group) settle(ctx context.Context, what string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		table, ok := g.table()
		if ok {
			g.mu.Lock()
			fmt.Fprintf(g.out, "%s: %s\n", what, table)
			g.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: the replicas did not settle: %s", what, table)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// table says who serves what, and whether that is every cluster once, by
// the replica that every replica's view gives it.
func (g *group) table() (string, bool) {
	var parts []string
	served := map[string]int{}
	ok := true
	var view string
	for _, id := range slices.Sorted(maps.Keys(g.running)) {
		r := g.running[id]
		names := r.reg.Snapshot().Names()
		st := r.m.Status()
		for _, n := range names {
			served[n]++
			// Served by the replica the view gives it: right after a
			// view change, before the Syncers have listed again, the
			// views agree while the old owner still serves.
			ok = ok && st.View.Owner(n) == id
		}
		if view == "" {
			view = st.View.ID
		}
		ok = ok && st.Serving && st.View.ID == view && len(st.View.Replicas) == len(g.running) && st.Waiting == 0
		parts = append(parts, fmt.Sprintf("%s %v", id, names))
	}
	ok = ok && len(served) == 4
	for _, n := range served {
		ok = ok && n == 1
	}
	return strings.Join(parts, ", "), ok
}
