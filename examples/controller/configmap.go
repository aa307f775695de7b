package main

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/clusterregistry/clusterregistry"
	mcr "github.com/clusterregistry/clusterregistry/controllerruntime"
)

// newConfigMapController keeps the hub's ConfigMap key in every cluster of
// reg: it copies the hub's data to a cluster whenever the hub's ConfigMap
// changes, the cluster's copy changes, or the cluster arrives. The
// reconciler has the shape of a single-cluster one; what is multi-cluster is
// the Registry lookup and the Broadcasts watch.
func newConfigMapController(mgr ctrl.Manager, reg *clusterregistry.Registry[*mcr.Cluster], key types.NamespacedName) (*mcr.Controller, error) {
	only := predicate.NewPredicateFuncs(func(o client.Object) bool { return client.ObjectKeyFromObject(o) == key })
	reconcile := func(ctx context.Context, req mcr.Request) (ctrl.Result, error) {
		cl, err := reg.Get(req.ClusterName)
		if err != nil || cl.GetConfig().Host == mgr.GetConfig().Host {
			return ctrl.Result{}, err // the hub keeps its own: a copy onto itself could undo a change
		}
		var src corev1.ConfigMap
		if err := mgr.GetClient().Get(ctx, req.NamespacedName, &src); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err) // nothing to copy; copies stay
		}
		dst := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: src.Namespace, Name: src.Name}}
		_, err = controllerutil.CreateOrUpdate(ctx, cl.GetClient(), dst, func() error {
			dst.Data, dst.BinaryData = src.Data, src.BinaryData
			return nil
		})
		return ctrl.Result{}, err
	}
	return mcr.NewController("configmap", reg, mcr.ReconcileFunc(reconcile),
		mcr.For(&corev1.ConfigMap{}, only), mcr.Broadcasts(mgr.GetCache(), &corev1.ConfigMap{}, only))
}
