// Package e2e tests the clusterregistry library against real, local
// Kubernetes API servers started by package localcluster.
package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	os.Exit(localcluster.RunTests(m, nil, leakOptions()...))
}

func leakOptions() []goleak.Option {
	return []goleak.Option{
		// klog's flush daemon starts at init and runs for the whole process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}
}
