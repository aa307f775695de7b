// Package controller tests the controllerruntime module's multi-cluster
// controller against real, local Kubernetes API servers started by package
// localcluster.
package controller

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	"go.uber.org/goleak"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

func TestMain(m *testing.M) {
	// controller-runtime warns, after 30s, of a global logger never set.
	log.SetLogger(logr.Discard())
	os.Exit(localcluster.RunTests(m, nil,
		// klog's flush daemon starts at init and runs for the whole process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1")))
}
