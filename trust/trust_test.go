package trust_test

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/trust"
)

func TestPolicyOnKubeconfigEntries(t *testing.T) {
	exec := &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "/bin/sh", Args: []string{"-c", "touch /tmp/pwned"}}}
	files := &clientcmdapi.AuthInfo{ClientCertificate: "/etc/service/cert.pem", ClientKey: "/etc/service/key.pem"}
	tokenFile := &clientcmdapi.AuthInfo{TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token"}
	provider := &clientcmdapi.AuthInfo{AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "oidc"}}
	caFile := &clientcmdapi.Cluster{Server: "https://x", CertificateAuthority: "/etc/service/ca.pem"}
	insecure := &clientcmdapi.Cluster{Server: "https://x", InsecureSkipTLSVerify: true, ProxyURL: "http://proxy:3128"}
	tests := []struct {
		name      string
		policy    trust.Policy
		cluster   *clientcmdapi.Cluster
		user      *clientcmdapi.AuthInfo
		wantField string // empty: accepted
	}{
		{"untrusted refuses exec", trust.Untrusted, nil, exec, "user.exec"},
		{"untrusted refuses key files", trust.Untrusted, nil, files, "user.client-certificate"},
		{"untrusted refuses a token file", trust.Untrusted, nil, tokenFile, "user.tokenFile"},
		{"untrusted refuses auth providers", trust.Untrusted, nil, provider, "user.auth-provider"},
		{"untrusted refuses a CA file", trust.Untrusted, caFile, nil, "cluster.certificate-authority"},
		{"untrusted accepts insecure and proxy", trust.Untrusted, insecure, nil, ""},
		{"zero policy refuses insecure", trust.Policy{}, insecure, nil, "cluster.insecure-skip-tls-verify"},
		{"trusted accepts exec", trust.Trusted, caFile, exec, ""},
		{"exec allowed alone", trust.Policy{AllowExec: true}, nil, exec, ""},
		{"plain token and inline data", trust.Policy{}, &clientcmdapi.Cluster{Server: "https://x", CertificateAuthorityData: []byte("ca")},
			&clientcmdapi.AuthInfo{Token: "t", ClientCertificateData: []byte("c"), ClientKeyData: []byte("k")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.CheckKubeconfig(tt.cluster, tt.user)
			if tt.wantField == "" {
				assert.NoError(t, err)
				return
			}
			var fe *clusterregistry.FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.wantField, fe.Field)
			assert.ErrorIs(t, err, trust.ErrRefused)
			assert.NotContains(t, err.Error(), "pwned", "the error names the setting, not its value")
		})
	}
	err := trust.Untrusted.CheckKubeconfig(caFile, files)
	assert.EqualError(t, err, "field cluster.certificate-authority: refused by the source's trust policy"+
		" (so are user.client-certificate, user.client-key)")
}

func TestPolicyOnRestConfigs(t *testing.T) {
	cfg := &rest.Config{
		Host:            "https://x",
		ExecProvider:    &clientcmdapi.ExecConfig{Command: "aws"},
		BearerTokenFile: "/var/run/token",
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Proxy:           func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	err := trust.Untrusted.CheckConfig(cfg)
	assert.EqualError(t, err, "field config.execProvider: refused by the source's trust policy (so are config.bearerTokenFile)")
	err = trust.Policy{}.CheckConfig(cfg)
	assert.ErrorContains(t, err, "config.insecure, config.proxy")
	assert.NoError(t, trust.Trusted.CheckConfig(cfg))
	assert.NoError(t, trust.Policy{}.CheckConfig(&rest.Config{Host: "https://x", BearerToken: "t"}))
	assert.NoError(t, trust.Policy{}.CheckConfig(nil))
}

// FuzzTrustPolicy checks that a refused setting always yields a FieldError
// that wraps ErrRefused and never quotes the setting's value.
func FuzzTrustPolicy(f *testing.F) {
	f.Add("/bin/sh", "/etc/key", "/etc/ca", "http://proxy", true, uint8(0))
	f.Add("", "", "", "", false, uint8(31))
	f.Fuzz(func(t *testing.T, command, keyFile, caFile, proxy string, insecure bool, allow uint8) {
		p := trust.Policy{
			AllowExec: allow&1 != 0, AllowAuthProvider: allow&2 != 0, AllowLocalFiles: allow&4 != 0,
			AllowInsecure: allow&8 != 0, AllowProxy: allow&16 != 0,
		}
		user := &clientcmdapi.AuthInfo{ClientKey: keyFile}
		if command != "" {
			user.Exec = &clientcmdapi.ExecConfig{Command: command}
		}
		cluster := &clientcmdapi.Cluster{CertificateAuthority: caFile, ProxyURL: proxy, InsecureSkipTLSVerify: insecure}
		err := p.CheckKubeconfig(cluster, user)
		wantRefused := (command != "" && !p.AllowExec) || ((keyFile != "" || caFile != "") && !p.AllowLocalFiles) ||
			(proxy != "" && !p.AllowProxy) || (insecure && !p.AllowInsecure)
		if (err != nil) != wantRefused {
			t.Fatalf("policy %+v: err %v, want refused %v", p, err, wantRefused)
		}
		if err == nil {
			return
		}
		var fe *clusterregistry.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, trust.ErrRefused) {
			t.Fatalf("%v is not a refusal", err)
		}
		// The same settings with other values give the same text: the
		// error says which settings, never what they hold.
		other := func(v string) string {
			if v == "" {
				return ""
			}
			return "x"
		}
		user2 := &clientcmdapi.AuthInfo{ClientKey: other(keyFile)}
		if command != "" {
			user2.Exec = &clientcmdapi.ExecConfig{Command: "x"}
		}
		cluster2 := &clientcmdapi.Cluster{CertificateAuthority: other(caFile), ProxyURL: other(proxy), InsecureSkipTLSVerify: insecure}
		if want := p.CheckKubeconfig(cluster2, user2); want == nil || want.Error() != err.Error() {
			t.Fatalf("error %q depends on the values (want %v)", err, want)
		}
	})
}
