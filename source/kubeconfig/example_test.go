package kubeconfig_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
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
