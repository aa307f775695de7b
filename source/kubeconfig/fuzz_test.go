package kubeconfig_test

import (
	"strings"
	"testing"

	"github.com/clusterregistry/clusterregistry/source/internal/leakcheck"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

// FuzzParse checks that no input makes Parse panic, and that no error quotes
// a credential of the input.
func FuzzParse(f *testing.F) {
	seeds := []string{
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
	}
	for _, s := range seeds {
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
		secrets, public := leakcheck.Kubeconfig(data)
		for _, c := range clusters {
			if c.Err == nil {
				if c.Config == nil {
					t.Fatalf("cluster %q has neither Config nor Err", c.Name)
				}
				continue
			}
			if s := leakcheck.Quoted(c.Err.Error(), public, secrets...); s != "" {
				t.Fatalf("cluster %q: error quotes the credential %q: %v", c.Name, s, c.Err)
			}
		}
	})
}
