package secret_test

import (
	"context"
	"fmt"
	"log"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/trust"
)

func ExampleNew_argoCD() {
	// A clientset of the hub cluster; here a fake holding one cluster Secret
	// as Argo CD writes it.
	hub := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "argocd", Name: "cluster-prod", ResourceVersion: "42",
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "cluster"},
		},
		Data: map[string][]byte{
			"name":   []byte("prod"),
			"server": []byte("https://prod.example:6443"),
			"config": []byte(`{"bearerToken": "do-not-print", "tlsClientConfig": {"insecure": false}}`),
		},
	})
	src, err := secret.New(hub, secret.WithFormat(secret.ArgoCD), secret.WithNamespace("argocd"))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		fmt.Println(c.Name, c.Config.Host, "revision", c.Revision)
	}
	// Output: prod https://prod.example:6443 revision 42
}

func ExampleNew_kubeconfig() {
	hub := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "fleet", Name: "stage",
			Labels: map[string]string{"sigs.k8s.io/multicluster-runtime-kubeconfig": "true"},
		},
		Data: map[string][]byte{"kubeconfig": []byte(`
clusters: [{name: c, cluster: {server: "https://stage.example"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: do-not-print}}]
`)},
	})
	src, err := secret.New(hub, secret.WithNamespace("fleet"))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(clusters[0].Name, clusters[0].Config.Host)
	// Output: stage https://stage.example
}

func ExampleWithTrustPolicy() {
	// Argo CD's EKS clusters authenticate with an exec plugin. Secrets are
	// untrusted by default, so such a cluster is refused:
	hub := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "argocd", Name: "cluster-eks",
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "cluster"},
		},
		Data: map[string][]byte{
			"name":   []byte("eks"),
			"server": []byte("https://eks.example"),
			"config": []byte(`{"execProviderConfig": {"command": "argocd-k8s-auth", "args": ["aws", "--cluster-name", "prod"], "apiVersion": "client.authentication.k8s.io/v1beta1"}}`),
		},
	})
	src, err := secret.New(hub, secret.WithFormat(secret.ArgoCD))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(clusters[0].Err)

	// Where only administrators can write the namespace, allow exec plugins
	// and nothing else that trust.Untrusted refuses:
	policy := trust.Untrusted
	policy.AllowExec = true
	src, err = secret.New(hub, secret.WithFormat(secret.ArgoCD), secret.WithNamespace("argocd"), secret.WithTrustPolicy(policy))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err = src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(clusters[0].Name, clusters[0].Config.ExecProvider.Command)
	// Output:
	// argocd/cluster-eks: field data[config].execProviderConfig: refused by the source's trust policy
	// eks argocd-k8s-auth
}

func ExampleNew_clusterAPI() {
	// A hub where Cluster API manages a cluster called prod in two
	// namespaces: each has its kubeconfig Secret, and certificate Secrets
	// that the source leaves out.
	kubeconfig := func(server string) []byte {
		return []byte(`{"apiVersion": "v1", "kind": "Config", "current-context": "admin",
			"clusters": [{"name": "c", "cluster": {"server": "` + server + `"}}],
			"users": [{"name": "u", "user": {"token": "do-not-print"}}],
			"contexts": [{"name": "admin", "context": {"cluster": "c", "user": "u"}}]}`)
	}
	capiSecret := func(ns, name, cluster string, value []byte) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels: map[string]string{secret.ClusterAPINameLabel: cluster}},
			Type: secret.ClusterAPISecretType,
			Data: map[string][]byte{"value": value},
		}
	}
	hub := fake.NewClientset(
		capiSecret("team-a", "prod-kubeconfig", "prod", kubeconfig("https://a.example:6443")),
		capiSecret("team-a", "prod-ca", "prod", []byte("a certificate")),
		capiSecret("team-b", "prod-kubeconfig", "prod", kubeconfig("https://b.example:6443")),
	)
	src, err := secret.New(hub, secret.WithFormat(secret.ClusterAPI))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		fmt.Println(c.Name, c.Config.Host, c.Labels[secret.LabelNamespace])
	}
	// Output:
	// team-a:prod https://a.example:6443 team-a
	// team-b:prod https://b.example:6443 team-b
}
