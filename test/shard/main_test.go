// Package shard tests package shard of the clusterregistry library against a
// real hub (a kube-apiserver started by package localcluster), with every
// replica a separate OS process (cmd/shardreplica), so that a kill is a real
// kill and a partition cuts one process off. Each replica records every
// build and release to a ledger, and the tests prove the guarantee from the
// ledgers: no two processes ever hold a client of one cluster at once.
//
// The tests share one hub and run one after the other; each uses a group of
// its own, so that no test sees another's Leases. The bounds and the
// figures each test logs are listed in test/README.md.
package shard

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

// replicaBin is the shardreplica program, built once by TestMain.
var replicaBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	replicaBin = filepath.Join(dir, "shardreplica")
	begin := time.Now()
	// The test binary runs in test/shard; the program is in the same module.
	args := []string{"build", "-o", replicaBin}
	if raceEnabled {
		// The replicas run package shard for real, concurrently: under
		// -race, they look for data races too (see group.stopAll).
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, "../cmd/shardreplica")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: building cmd/shardreplica:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "shard: built %s in %s\n", replicaBin, time.Since(begin).Round(time.Millisecond))
	hubDir = dir
	return localcluster.RunTests(m, nil, leakOptions()...)
}

func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func leakOptions() []goleak.Option {
	return []goleak.Option{
		// klog's flush daemon starts at init and runs for the whole process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}
}

// hub is the one cluster whose API server holds every test's Leases.
type hubCluster struct {
	cluster   *localcluster.Cluster
	caFile    string
	tokenFile string
}

var (
	hubOnce sync.Once
	hubDir  string // TestMain's temporary directory
	hub     *hubCluster
	hubErr  error
)

// startHub starts the hub on first use; localcluster.RunTests stops it after
// the last test.
func startHub(t *testing.T) *hubCluster {
	t.Helper()
	hubOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		begin := time.Now()
		env, err := localcluster.Start(ctx, localcluster.Options{Clusters: 1})
		if err != nil {
			hubErr = err
			return
		}
		c := env.Clusters()[0]
		admin := c.AdminConfig()
		h := &hubCluster{
			cluster:   c,
			caFile:    filepath.Join(hubDir, "hub-ca.pem"),
			tokenFile: filepath.Join(hubDir, "hub-token"),
		}
		if err := os.WriteFile(h.caFile, admin.CAData, 0o600); err != nil {
			hubErr = err
			return
		}
		if err := os.WriteFile(h.tokenFile, []byte(admin.BearerToken), 0o600); err != nil {
			hubErr = err
			return
		}
		hub = h
		fmt.Fprintf(os.Stderr, "shard: hub ready in %s\n", time.Since(begin).Round(time.Millisecond))
	})
	if hubErr != nil {
		t.Fatalf("hub: %v", hubErr)
	}
	return hub
}
