package fleet

import (
	"testing"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestMain(m *testing.M) { clusterregistrytest.VerifyTestMain(m) }
