package secret

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/clusterregistry/clusterregistry/source/internal/informers"
)

// controlPlaneInitialized is the condition by which a Cluster API Cluster
// says that its control plane answers.
const controlPlaneInitialized = "ControlPlaneInitialized"

func (s *Source) clusterGVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: s.opts.capiVersion, Resource: "clusters"}
}

// listInitialized lists Cluster API's Clusters from the API server, in
// chunks, and returns the namespace/name of those that are initialized.
func (s *Source) listInitialized(ctx context.Context) (map[string]bool, error) {
	ready := map[string]bool{}
	opts := metav1.ListOptions{Limit: listChunk}
	for {
		list, err := s.opts.clusters.Resource(s.clusterGVR()).Namespace(s.opts.namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list Cluster API clusters: %w", err)
		}
		for i := range list.Items {
			if initialized(&list.Items[i]) {
				ready[list.Items[i].GetNamespace()+"/"+list.Items[i].GetName()] = true
			}
		}
		if list.GetContinue() == "" {
			return ready, nil
		}
		opts.Continue = list.GetContinue()
	}
}

// initializedIn returns the namespace/name of the initialized Clusters
// among objs, an informer's cache.
func initializedIn(objs []any) map[string]bool {
	ready := map[string]bool{}
	for _, obj := range objs {
		if u, ok := obj.(*unstructured.Unstructured); ok && initialized(u) {
			ready[u.GetNamespace()+"/"+u.GetName()] = true
		}
	}
	return ready
}

// initializedOnly returns the Secrets whose Cluster is among ready.
func initializedOnly(secrets []*corev1.Secret, ready map[string]bool) []*corev1.Secret {
	out := secrets[:0:0]
	for _, sec := range secrets {
		if ready[sec.Namespace+"/"+sec.Labels[ClusterAPINameLabel]] {
			out = append(out, sec)
		}
	}
	return out
}

// initialized reports whether a Cluster API Cluster says that its control
// plane is initialized, in any of the ways its versions say it: v1beta2's
// status.initialization.controlPlaneInitialized and its condition, and
// v1beta1's condition (in status.conditions, or status.v1beta2.conditions).
func initialized(u *unstructured.Unstructured) bool {
	if ok, found, _ := unstructured.NestedBool(u.Object, "status", "initialization", "controlPlaneInitialized"); found && ok {
		return true
	}
	for _, path := range [][]string{{"status", "conditions"}, {"status", "v1beta2", "conditions"}} {
		conds, _, _ := unstructured.NestedSlice(u.Object, path...)
		for _, c := range conds {
			m, ok := c.(map[string]any)
			if ok && m["type"] == controlPlaneInitialized && m["status"] == string(metav1.ConditionTrue) {
				return true
			}
		}
	}
	return false
}

// clusterResource is the informer of Cluster API's Clusters: a change is a
// Cluster that appears, goes, or changes whether it is initialized.
func (s *Source) clusterResource() informers.Resource {
	clusters := s.opts.clusters.Resource(s.clusterGVR()).Namespace(s.opts.namespace)
	return informers.Resource{
		Client: s.opts.clusters,
		Object: &unstructured.Unstructured{},
		List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return clusters.List(ctx, o)
		},
		Watch:     clusters.Watch,
		Transform: trimCluster,
		Changed: func(oldObj, newObj any) bool {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			// Clusters change status often; only this change matters.
			return !ok1 || !ok2 || initialized(o) != initialized(n)
		},
	}
}

// trimCluster keeps of a Cluster what initialized reads, in a new object
// that shares those parts with obj (neither is ever changed).
func trimCluster(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	status := map[string]any{}
	if st, ok := u.Object["status"].(map[string]any); ok {
		for _, k := range []string{"initialization", "conditions", "v1beta2"} {
			if v, ok := st[k]; ok {
				status[k] = v
			}
		}
	}
	meta := map[string]any{"namespace": u.GetNamespace(), "name": u.GetName(), "resourceVersion": u.GetResourceVersion()}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": meta, "status": status,
	}}, nil
}
