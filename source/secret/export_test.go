package secret

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/clusterregistry/clusterregistry"
)

// Cluster returns the cluster that s makes of sec.
func Cluster(s *Source, sec *corev1.Secret) clusterregistry.Cluster {
	c, _ := s.cluster(sec)
	return c
}
