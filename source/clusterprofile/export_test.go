package clusterprofile

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/clusterregistry/clusterregistry"
)

// Cluster returns the cluster that s makes of the profile u, in a
// namespace of clusterset clusterSet.
func Cluster(s *Source, u *unstructured.Unstructured, clusterSet string) clusterregistry.Cluster {
	return s.cluster(u, clusterSet)
}
