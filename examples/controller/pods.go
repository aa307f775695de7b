package main

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// kubeClient is what the pod watcher needs of a cluster's client:
// *clusterregistry.Client, or *clusterregistrytest.FakeClient in tests.
type kubeClient interface {
	Kubernetes() kubernetes.Interface
}

// watchPods returns the per-cluster work of the controller: an informer on
// the cluster's pods that logs each pod that appears or goes, until ctx
// ends. A real controller would queue reconcile requests here.
func watchPods[T kubeClient](log logr.Logger) func(ctx context.Context, cluster string, client T) {
	return func(ctx context.Context, cluster string, client T) {
		log := log.WithValues("cluster", cluster)
		factory := informers.NewSharedInformerFactory(client.Kubernetes(), 10*time.Minute)
		pods := factory.Core().V1().Pods().Informer()
		_, err := pods.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(obj any, isInInitialList bool) {
				if p, ok := obj.(*corev1.Pod); ok && !isInInitialList {
					log.Info("Pod added", "pod", p.Namespace+"/"+p.Name)
				}
			},
			DeleteFunc: func(obj any) {
				if p, ok := obj.(*corev1.Pod); ok {
					log.Info("Pod deleted", "pod", p.Namespace+"/"+p.Name)
				}
			},
		})
		if err != nil {
			log.Error(err, "Cannot watch pods")
			return
		}
		factory.Start(ctx.Done())
		// Shutdown waits for the informer's goroutines once ctx has ended.
		defer factory.Shutdown()
		if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
			return
		}
		log.Info("Watching pods", "pods", len(pods.GetStore().ListKeys()))
		<-ctx.Done()
	}
}
