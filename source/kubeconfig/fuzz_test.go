package kubeconfig_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/credcheck"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/trust"
)

// parseSeeds are kubeconfigs for the fuzz targets of Parse.
func parseSeeds() []string {
	return []string{
		"",
		kubeconfigYAML("a", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example"}),
		kubeconfigYAML("a", ctxSpec{"a", `""`}),
		`{"apiVersion":"v1","clusters":[{"name":"c","cluster":{"server":"https://c"}}],"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],"users":[{"name":"u","user":{"token":"tok-s3cr3tvalue"}}]}`,
		`
clusters:
- {name: c, cluster: {server: "https://c.example", proxy-url: "socks5://u:pw-s3cr3tvalue@p", certificate-authority-data: Y2E=}}
contexts:
- {name: x, context: {cluster: c, user: u}}
- {name: x, context: {cluster: c, user: v}}
- {name: z, context: {cluster: c, user: v}}
- {name: w, context: {cluster: nope, user: v}}
users:
- {name: u, user: {username: admin, password: pw-s3cr3tvalue}}
- {name: v, user: {client-certificate-data: Y2VydA==, client-key-data: a2V5LXMzY3IzdHZhbHVl}}
- {name: v, user: {token: tok-s3cr3tvalue}}
`,
		`
clusters:
- {name: c, cluster: {server: "https://c.example", extensions: [{name: client.authentication.k8s.io/exec, extension: {a: 1}}]}}
contexts:
- {name: x, context: {cluster: c, user: e}}
users:
- name: e
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./bin/get-token
      env: [{name: SECRET, value: env-s3cr3tvalue}]
      interactiveMode: Never
`,
		"? {token: tok-s3cr3tvalue}\n: c\n",
		"users:\n- name: u\n  user: {token: !!int tok-s3cr3tvalue}\n",
		`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: /etc/ssl/ca.pem, insecure-skip-tls-verify: true}}]
contexts: [{name: x, context: {cluster: c, user: u}}, {name: y, context: {cluster: c, user: p}}, {name: "arn:aws:eks:r:1:cluster/z", context: {cluster: d, user: t}}]
clusters: [{name: d, cluster: {server: "https://d.example", proxy-url: "http://proxy:3128"}}]
users:
- {name: u, user: {client-key: /etc/service/key.pem, client-certificate-data: Y2VydA==}}
- {name: p, user: {auth-provider: {name: oidc, config: {id-token: tok-s3cr3tvalue}}}}
- {name: t, user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}}
`,
		`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: e}}]
users:
- name: e
  user: {exec: {command: /bin/sh, args: [-c, "touch /tmp/pwned"], apiVersion: client.authentication.k8s.io/v1, env: [{name: K, value: env-s3cr3tvalue}]}}
`,
	}
}

// FuzzParse checks that no input makes Parse panic, and that no error quotes
// a credential of the input. It trusts the input, so that the paths that
// read files are fuzzed too.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Everything allowed but local files: a fuzzed path could name any
		// file of the host (a FIFO, /dev/stdin) and hang the run. Reading
		// referenced files is covered by the unit tests.
		trusting := trust.Trusted
		trusting.AllowLocalFiles = false
		clusters, err := kubeconfig.Parse(data, "fuzz", kubeconfig.WithTrustPolicy(trusting))
		if err != nil {
			if clusters != nil {
				t.Fatalf("clusters %v beside error %v", clusters, err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("document error quotes a credential: %v", err)
			}
			return
		}
		secrets, public := credcheck.Kubeconfig(data)
		for _, c := range clusters {
			credcheck.Cluster(t, c, &trusting, public, secrets...)
		}
	})
}

// FuzzParseUntrusted checks Parse as it treats user-supplied kubeconfigs,
// with its default trust.Untrusted: no input makes it panic; every context
// is either usable with nothing the policy refuses in its config, or has an
// error; a refusal is a *FieldError at the location that names a field; and
// no error quotes a credential.
func FuzzParseUntrusted(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		clusters, err := kubeconfig.Parse(data, "fuzz")
		if err != nil {
			if clusters != nil {
				t.Fatalf("clusters %v beside error %v", clusters, err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("document error quotes a credential: %v", err)
			}
			return
		}
		secrets, public := credcheck.Kubeconfig(data)
		for _, c := range clusters {
			credcheck.Cluster(t, c, &trust.Untrusted, public, secrets...)
			var fe *clusterregistry.FieldError
			if c.Err != nil && (!errors.As(c.Err, &fe) || fe.Location != "fuzz" || fe.Field == "") {
				t.Fatalf("cluster %q: error %v is not a FieldError at the location naming a field", c.Name, c.Err)
			}
		}
	})
}
