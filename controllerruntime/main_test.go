package controllerruntime

import (
	"testing"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestMain(m *testing.M) {
	// controller-runtime warns, after 30s, of a global logger never set.
	log.SetLogger(logr.Discard())
	clusterregistrytest.VerifyTestMain(m)
}
