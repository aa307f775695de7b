package secret_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/clusterregistry/clusterregistry/source/internal/credcheck"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/trust"
)

// FuzzKubeconfigSecret checks that no kubeconfig in a Secret makes the
// Source panic or quote a credential.
func FuzzKubeconfigSecret(f *testing.F) {
	f.Add([]byte(kubeconfig("a", "a")))
	f.Add([]byte(kubeconfig("", "a", "b")))
	f.Add([]byte(kubeconfig("nope", "a")))
	f.Add([]byte("users: [{name: u, user: {token: !!int tok-s3cr3tvalue}}]"))
	f.Add([]byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: ca.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}, {name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3tvalue, tokenFile: /etc/passwd}}, {name: u, user: {password: pw-s3cr3tvalue}}]
`))
	f.Add([]byte(""))
	f.Add([]byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: /etc/ssl/ca.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: /bin/sh, args: [-c, "touch /tmp/pwned"], apiVersion: client.authentication.k8s.io/v1, env: [{name: K, value: env-s3cr3tvalue}]}, client-key: /etc/service/key.pem}}]
`))
	f.Add([]byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", insecure-skip-tls-verify: true, proxy-url: "http://p:3128"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {auth-provider: {name: gcp, config: {cmd-path: /bin/sh, access-token: tok-s3cr3tvalue}}}}]
`))
	s, err := secret.New(fake.NewClientset())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := secret.Cluster(s, kubeconfigSecret("hub", "prod", map[string]string{"kubeconfig": string(data)}))
		if c.Name != "prod" {
			t.Fatalf("cluster named %q, not after its Secret", c.Name)
		}
		secrets, public := credcheck.Kubeconfig(data)
		credcheck.Cluster(t, c, &trust.Untrusted, public, secrets...)
	})
}

// FuzzArgoCDSecret checks that no Argo CD cluster Secret makes the Source
// panic or quote a credential.
func FuzzArgoCDSecret(f *testing.F) {
	f.Add("prod", "https://prod.example", []byte(`{"bearerToken": "tok-s3cr3tvalue", "tlsClientConfig": {"caData": "Y2E="}}`))
	f.Add("prod", "https://prod.example", []byte(`{"username": "a", "password": "pw-s3cr3tvalue", "tlsClientConfig": {"insecure": true}}`))
	f.Add("eks", "https://eks.example", []byte(`{"execProviderConfig": {"command": "aws", "args": ["eks"], "env": {"K": "env-s3cr3tvalue"}, "apiVersion": "client.authentication.k8s.io/v1beta1"}}`))
	f.Add("x", "https://u:pw-s3cr3tvalue%zz@x", []byte(`{"bearerToken": tok-s3cr3tvalue}`))
	f.Add("", "", []byte(`{"tlsClientConfig": {"keyData": "k3y-s3cr3tvalue!"}, "proxyUrl": "ftp://u:pw-s3cr3tvalue@p", "awsAuthConfig": {}}`))
	f.Add("x", "https://x", []byte(`null`))
	f.Add("arn:aws:eks:r:1:cluster/x", "https://x", []byte(`{"execProviderConfig": {"command": "/bin/sh", "args": ["-c", "touch /tmp/pwned"], "apiVersion": "client.authentication.k8s.io/v1"}, "tlsClientConfig": {"insecure": true}}`))
	s, err := secret.New(fake.NewClientset(), secret.WithFormat(secret.ArgoCD))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, server string, config []byte) {
		c := secret.Cluster(s, argoSecret("argocd", "cluster-1", map[string]string{"name": name, "server": server, "config": string(config)}))
		if c.Name == "" {
			t.Fatal("cluster with no name")
		}
		var secrets []string
		var cfg struct {
			Password    string `json:"password"`
			BearerToken string `json:"bearerToken"`
			TLS         struct {
				KeyData []byte `json:"keyData"`
			} `json:"tlsClientConfig"`
			Exec *struct {
				Env map[string]string `json:"env"`
			} `json:"execProviderConfig"`
		}
		if json.Unmarshal(config, &cfg) == nil {
			secrets = append(secrets, cfg.Password, cfg.BearerToken, string(cfg.TLS.KeyData),
				base64.StdEncoding.EncodeToString(cfg.TLS.KeyData))
			if cfg.Exec != nil {
				for _, v := range cfg.Exec.Env {
					secrets = append(secrets, v)
				}
			}
		}
		secrets = append(secrets, server)
		credcheck.Cluster(t, c, &trust.Untrusted, name+"\x00cluster-1\x00argocd", secrets...)
	})
}

// FuzzClusterAPISecret checks that no Cluster API kubeconfig Secret, whatever
// its kubeconfig, namespace and cluster label, makes the Source panic, list
// a usable cluster under an invalid name or quote a credential.
func FuzzClusterAPISecret(f *testing.F) {
	f.Add("capi", "prod", []byte(kubeconfig("a", "a")))
	f.Add("capi", "prod/x", []byte(kubeconfig("a", "a")))
	f.Add("", "", []byte(""))
	f.Add("team-b", "prod", []byte("users: [{name: u, user: {token: !!int tok-s3cr3tvalue}}]"))
	f.Add("capi", "eks", []byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: /etc/ssl/ca.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: /bin/sh, args: [-c, "touch /tmp/pwned"], apiVersion: client.authentication.k8s.io/v1, env: [{name: K, value: env-s3cr3tvalue}]}}}]
`))
	s, err := secret.New(fake.NewClientset(), secret.WithFormat(secret.ClusterAPI))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, namespace, cluster string, data []byte) {
		sec := kubeconfigSecret(namespace, cluster+"-kubeconfig", map[string]string{"value": string(data)})
		sec.Labels = map[string]string{secret.ClusterAPINameLabel: cluster}
		sec.Type = secret.ClusterAPISecretType
		c := secret.Cluster(s, sec)
		if c.Name != secret.ClusterAPIName(namespace, cluster) {
			t.Fatalf("cluster named %q, not %q", c.Name, secret.ClusterAPIName(namespace, cluster))
		}
		if c.Labels[secret.LabelNamespace] != namespace || c.Labels[secret.ClusterAPINameLabel] != cluster {
			t.Fatalf("labels %v", c.Labels)
		}
		secrets, public := credcheck.Kubeconfig(data)
		credcheck.Cluster(t, c, &trust.Untrusted, public+"\x00"+namespace+"\x00"+cluster, secrets...)
	})
}
