package secret

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
)

// Cluster returns the cluster that s makes of sec.
func Cluster(s *Source, sec *corev1.Secret) clusterregistry.Cluster {
	c, _ := s.cluster(sec, nil)
	return c
}

// MemoOf returns the memo of s's Lists: its counters tell how many Secrets a
// List resolved, Disable gives a baseline for benchmarks.
func MemoOf(s *Source) *kcfg.Memo { return &s.memo }

// WithNudgePeriod sets how often a failing Watch asks for a List.
func WithNudgePeriod(d time.Duration) Option {
	return optionFunc(func(o *options) { o.nudge = d })
}
