package trust_test

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/trust"
)

// A config that a user supplied may not make the service run a command or
// read its files: Untrusted refuses both, and the error names the fields.
func ExamplePolicy_CheckConfig() {
	supplied := &rest.Config{
		Host:            "https://cluster.example",
		BearerTokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
		ExecProvider:    &clientcmdapi.ExecConfig{Command: "fetch-token"},
	}
	err := trust.Untrusted.CheckConfig(supplied)
	fmt.Println(errors.Is(err, trust.ErrRefused))
	fmt.Println(err)
	fmt.Println(trust.Trusted.CheckConfig(supplied))
	// Output:
	// true
	// field config.execProvider: refused by the source's trust policy (so are config.bearerTokenFile)
	// <nil>
}
