// Package inventory tests the sources of the two standard ways a management
// cluster publishes its clusters, Cluster API's kubeconfig Secrets and the
// Cluster Inventory API's ClusterProfiles, against a real hub cluster and
// member clusters started by package localcluster.
package inventory

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// tokenPlugin is the path of the exec plugin test/cmd/tokenplugin, built by
// TestMain.
var tokenPlugin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "inventory-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tokenPlugin = filepath.Join(dir, "tokenplugin")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", tokenPlugin, "../cmd/tokenplugin")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building the token plugin: %v\n%s", err, out)
		return 1
	}
	return localcluster.RunTests(m, nil, leakOptions()...)
}

func leakOptions() []goleak.Option {
	return []goleak.Option{
		// klog's flush daemon starts at init and runs for the whole process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}
}

var (
	envOnce sync.Once
	env     *localcluster.Environment
	envErr  error
)

// sharedEnv returns the package's three clusters, cluster-1 the hub and
// the others members, started by the first test that asks. Tests share
// them (each in namespaces of its own); TestMain's RunTests stops them.
func sharedEnv(t *testing.T) *localcluster.Environment {
	t.Helper()
	envOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		env, envErr = localcluster.Start(ctx, localcluster.Options{Clusters: 3, Progress: os.Stderr})
	})
	if envErr != nil {
		t.Fatalf("localcluster: %v", envErr)
	}
	return env
}
