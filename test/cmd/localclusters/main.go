// Command localclusters runs local Kubernetes clusters (real kube-apiserver
// processes over one etcd, on 127.0.0.1) until interrupted.
//
//	go run ./cmd/localclusters -n 3
//
// It builds the server binaries first if they are not cached (about 10
// minutes the first time), starts the clusters, prints where the kubeconfig
// files are, and stops everything on Ctrl-C or SIGTERM. With -build-only it
// builds the binaries, prints their paths and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func main() {
	n := flag.Int("n", 3, "number of clusters")
	dir := flag.String("dir", "", "directory for data, logs and kubeconfigs (default: a temporary one, removed on exit)")
	buildOnly := flag.Bool("build-only", false, "build the server binaries, print their paths and exit")
	flag.Parse()
	if err := run(*n, *dir, *buildOnly); err != nil {
		fmt.Fprintln(os.Stderr, "localclusters:", err)
		os.Exit(1)
	}
}

func run(n int, dir string, buildOnly bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	begin := time.Now()
	bins, err := localcluster.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		return err
	}
	if buildOnly {
		fmt.Printf("etcd:           %s\nkube-apiserver: %s\n(ready in %s)\n", bins.Etcd, bins.KubeAPIServer, time.Since(begin).Round(time.Millisecond))
		return nil
	}

	env, err := localcluster.Start(ctx, localcluster.Options{Clusters: n, Dir: dir, Binaries: bins, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer env.Stop()

	fmt.Printf("%d clusters ready in %s.\n\n", n, time.Since(begin).Round(time.Millisecond))
	for _, c := range env.Clusters() {
		fmt.Printf("  %-10s %s  kubeconfig %s\n", c.Name(), c.Server(), c.KubeconfigPath())
	}
	fmt.Printf("\nAll clusters as contexts:\n  export KUBECONFIG=%s\n\nPress Ctrl-C to stop.\n", env.KubeconfigPath())
	<-ctx.Done()
	fmt.Println("\nStopping.")
	return env.Stop()
}
