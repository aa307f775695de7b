package clusterprofile_test

import (
	"context"
	"fmt"
	"log"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/source/compose"
)

// fleetProfile is a ClusterProfile as a cluster manager publishes it.
func fleetProfile(ns, name, server, healthy string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1",
		"kind":       "ClusterProfile",
		"metadata":   map[string]any{"namespace": ns, "name": name},
		"spec":       map[string]any{"displayName": name, "clusterManager": map[string]any{"name": "ocm"}},
		"status": map[string]any{
			"conditions": []any{map[string]any{"type": "ControlPlaneHealthy", "status": healthy}},
			"accessProviders": []any{map[string]any{
				"name":    "google",
				"cluster": map[string]any{"server": server},
			}},
		},
	}}
}

func ExampleNew() {
	// The operator's providers: credentials come from these plugins alone.
	providers, err := clusterprofile.ParseProviders([]byte(`{"providers": [{"name": "google", "execConfig": {
		"apiVersion": "client.authentication.k8s.io/v1beta1",
		"command": "gke-gcloud-auth-plugin", "provideClusterInfo": true}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	// A dynamic client of the hub; here a fake holding two profiles of one
	// name in two namespaces.
	hub := newClient(
		fleetProfile("team-a", "prod", "https://a.example:443", "True"),
		fleetProfile("team-b", "prod", "https://b.example:443", "False"),
	)
	src, err := clusterprofile.New(hub, providers)
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		fmt.Println(c.Name, c.Config.Host, c.Config.ExecProvider.Command, c.Config.ExecProvider.InteractiveMode,
			"healthy:", c.Labels[clusterprofile.LabelControlPlaneHealthy])
	}
	// Output:
	// team-a:prod https://a.example:443 gke-gcloud-auth-plugin Never healthy: True
	// team-b:prod https://b.example:443 gke-gcloud-auth-plugin Never healthy: False
}

// Leaving out the clusters whose profile says their control plane is
// unhealthy, with compose.Filter.
func ExampleNew_healthyOnly() {
	providers := []clusterprofile.Provider{provider("google")}
	hub := newClient(
		fleetProfile("team-a", "prod", "https://a.example:443", "True"),
		fleetProfile("team-b", "prod", "https://b.example:443", "False"),
	)
	src, err := clusterprofile.New(hub, providers)
	if err != nil {
		log.Fatal(err)
	}
	notUnhealthy, err := labels.Parse(clusterprofile.LabelControlPlaneHealthy + "!=False")
	if err != nil {
		log.Fatal(err)
	}
	healthy := compose.Filter(src, compose.Selector(notUnhealthy))
	clusters, err := healthy.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		fmt.Println(c.Name)
	}
	// Output: team-a:prod
}
