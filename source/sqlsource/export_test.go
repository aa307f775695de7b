package sqlsource

import (
	"time"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
)

// Row returns the cluster that s makes of a row, as row 1, that holds only a
// name and a kubeconfig.
func Row(s *Source, name string, kubeconfig []byte) clusterregistry.Cluster {
	cols := columns{name: 0, kubeconfig: 1, isDefault: -1, enabled: -1, labels: -1, revision: -1}
	c, _ := s.cluster(1, cols, []any{name, kubeconfig}, nil)
	return c
}

// SetChangeTimeout sets how long one run of s's change query may take, below
// the least that New allows, so that tests of a hung database end quickly.
// Call it before Watch.
func SetChangeTimeout(s *Source, d time.Duration) { s.opts.changeTimeout = d }

// SameRow is sameRow.
var SameRow = sameRow

// Scrub is scrub.
var Scrub = scrub

// MemoOf returns s's memo of resolved kubeconfigs: tests count its decodes,
// and Disable gives a baseline for benchmarks.
func MemoOf(s *Source) *kcfg.Memo { return &s.memo }
