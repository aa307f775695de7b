// Package credcheck helps the fuzz tests of the sources check that an error
// quotes no credential, and that every cluster listed is either usable or an
// error.
package credcheck

import (
	"encoding/base64"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/yaml"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/trust"
)

// Kubeconfig decodes data as the sources do and returns its credential
// values (tokens, passwords, keys, auth-provider and exec env values, URLs
// that may carry a password), and the values that an error may name (names,
// paths, commands), joined: a credential that coincides with one of them
// cannot be told apart. Data that does not decode has none.
func Kubeconfig(data []byte) (secrets []string, public string) {
	js, err := yaml.ToJSON(data)
	if err != nil {
		return nil, ""
	}
	var cfg clientcmdv1.Config
	if json.Unmarshal(js, &cfg) != nil {
		return nil, ""
	}
	var pub []string
	for _, c := range cfg.Clusters {
		pub = append(pub, c.Name, c.Cluster.CertificateAuthority)
		secrets = append(secrets, c.Cluster.Server, c.Cluster.ProxyURL)
	}
	for _, c := range cfg.Contexts {
		pub = append(pub, c.Name, c.Context.Cluster, c.Context.AuthInfo)
	}
	for _, u := range cfg.AuthInfos {
		a := u.AuthInfo
		pub = append(pub, u.Name, a.ClientCertificate, a.ClientKey, a.TokenFile, a.Impersonate, a.Username)
		secrets = append(secrets, a.Token, a.Password,
			string(a.ClientKeyData), base64.StdEncoding.EncodeToString(a.ClientKeyData))
		if a.AuthProvider != nil {
			for _, v := range a.AuthProvider.Config {
				secrets = append(secrets, v)
			}
		}
		if a.Exec != nil {
			pub = append(pub, a.Exec.Command, a.Exec.APIVersion, string(a.Exec.InteractiveMode))
			pub = append(pub, a.Exec.Args...)
			for _, e := range a.Exec.Env {
				pub = append(pub, e.Name)
				secrets = append(secrets, e.Value)
			}
		}
	}
	return secrets, strings.Join(pub, "\x00")
}

// Quoted returns the first of secrets, at least 8 bytes long, that msg
// contains and public does not, or "".
func Quoted(msg, public string, secrets ...string) string {
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(msg, s) && !strings.Contains(public, s) {
			return s
		}
	}
	return ""
}

// Cluster fails t if c, one cluster that a source listed, is neither usable
// nor an error, is both, is usable with an invalid name or with a setting
// that policy refuses (when policy is not nil), or has an error that quotes
// one of secrets (unless the value is also among the public strings that an
// error may name).
func Cluster(t testing.TB, c clusterregistry.Cluster, policy *trust.Policy, public string, secrets ...string) {
	t.Helper()
	if c.Err == nil {
		if c.Config == nil {
			t.Fatalf("cluster %q has neither Config nor Err", c.Name)
		}
		if policy != nil {
			if err := policy.CheckConfig(c.Config); err != nil {
				t.Fatalf("cluster %q: a refused setting reached the config: %v", c.Name, err)
			}
		}
		if err := clusterregistry.ValidateName(c.Name); err != nil {
			t.Fatalf("cluster %q: usable with an invalid name: %v", c.Name, err)
		}
		return
	}
	if c.Config != nil {
		t.Fatalf("cluster %q has both Config and Err %v", c.Name, c.Err)
	}
	if s := Quoted(c.Err.Error(), public, secrets...); s != "" {
		t.Fatalf("cluster %q: error quotes the credential %q: %v", c.Name, s, c.Err)
	}
}
