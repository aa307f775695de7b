// Command quickstart lists the clusters of your kubeconfig through
// clusterregistry: one client per context, each with the server version it
// reported or the error that kept it from being built.
//
//	cd examples && go run ./quickstart            # $KUBECONFIG, else ~/.kube/config
//	cd examples && go run ./quickstart -kubeconfig path/to/config
//
// With no kubeconfig at all it says so and points at the demo, which starts
// local clusters of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

// errNoKubeconfig means that none of the kubeconfig files exists.
var errNoKubeconfig = errors.New("no kubeconfig")

func main() {
	path := flag.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for each cluster's API server")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Stdout, *path, *timeout, os.Getenv)
	if errors.Is(err, errNoKubeconfig) {
		os.Exit(1) // run has explained
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run lists the clusters of the kubeconfig that path (or, when empty, the
// KUBECONFIG variable or the home directory, read through getenv) names.
func run(ctx context.Context, out io.Writer, path string, timeout time.Duration, getenv func(string) string) error {
	opts := []kubeconfig.Option{kubeconfig.WithGetenv(getenv)}
	if path != "" {
		opts = append(opts, kubeconfig.WithPath(path))
	}
	source, err := kubeconfig.New(opts...)
	if err != nil {
		return err
	}
	var found []string
	for _, p := range source.Paths() {
		if _, err := os.Stat(p); err == nil {
			found = append(found, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if len(found) == 0 {
		fmt.Fprintf(out, "No kubeconfig found: looked for %s.\n", strings.Join(source.Paths(), ", "))
		fmt.Fprintln(out, "Point KUBECONFIG or -kubeconfig at one to list your clusters.")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "To see clusterregistry at work without any cluster, run the demo: it starts three")
		fmt.Fprintln(out, "local Kubernetes API servers and a dashboard, and changes them while you watch:")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "    make demo        (or: cd examples && go run ./demo)")
		return errNoKubeconfig
	}

	syncer, err := clusterregistry.NewSyncer(source,
		clusterregistry.ClientBuilder{UserAgent: "clusterregistry-quickstart"},
		clusterregistry.WithBuildTimeout(timeout))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	// Run builds every cluster's client in parallel and keeps them in step
	// with the files; cancelling it releases them all.
	go func() { done <- syncer.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	if err := syncer.WaitForFirstSync(ctx); err != nil {
		return err
	}

	snap := syncer.Registry().Snapshot()
	fmt.Fprintf(out, "Clusters of %s:\n\n", strings.Join(found, ", "))
	if snap.Len() == 0 {
		fmt.Fprintln(out, "  (none: the kubeconfig has no contexts)")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tDEFAULT\tVERSION\tSTATUS")
	for info := range snap.Clusters() {
		mark, version, status := "", "-", "ok"
		if info.Default {
			mark = "*"
		}
		if client, err := snap.Get(info.Name); err == nil {
			version = client.ServerVersion().GitVersion
		}
		if info.Err != nil {
			status = info.Err.Error()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", info.Name, mark, version, status)
	}
	return tw.Flush()
}
