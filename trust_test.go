package clusterregistry_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
)

func TestTrustPolicyOnKubeconfigEntries(t *testing.T) {
	exec := &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "/bin/sh", Args: []string{"-c", "touch /tmp/pwned"}}}
	files := &clientcmdapi.AuthInfo{ClientCertificate: "/etc/service/cert.pem", ClientKey: "/etc/service/key.pem"}
	tokenFile := &clientcmdapi.AuthInfo{TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token"}
	provider := &clientcmdapi.AuthInfo{AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "oidc"}}
	caFile := &clientcmdapi.Cluster{Server: "https://x", CertificateAuthority: "/etc/service/ca.pem"}
	insecure := &clientcmdapi.Cluster{Server: "https://x", InsecureSkipTLSVerify: true, ProxyURL: "http://proxy:3128"}
	tests := []struct {
		name      string
		policy    clusterregistry.TrustPolicy
		cluster   *clientcmdapi.Cluster
		user      *clientcmdapi.AuthInfo
		wantField string // empty: accepted
	}{
		{"untrusted refuses exec", clusterregistry.UntrustedPolicy, nil, exec, "user.exec"},
		{"untrusted refuses key files", clusterregistry.UntrustedPolicy, nil, files, "user.client-certificate"},
		{"untrusted refuses a token file", clusterregistry.UntrustedPolicy, nil, tokenFile, "user.tokenFile"},
		{"untrusted refuses auth providers", clusterregistry.UntrustedPolicy, nil, provider, "user.auth-provider"},
		{"untrusted refuses a CA file", clusterregistry.UntrustedPolicy, caFile, nil, "cluster.certificate-authority"},
		{"untrusted accepts insecure and proxy", clusterregistry.UntrustedPolicy, insecure, nil, ""},
		{"zero policy refuses insecure", clusterregistry.TrustPolicy{}, insecure, nil, "cluster.insecure-skip-tls-verify"},
		{"trusted accepts exec", clusterregistry.TrustedPolicy, caFile, exec, ""},
		{"exec allowed alone", clusterregistry.TrustPolicy{AllowExec: true}, nil, exec, ""},
		{"plain token and inline data", clusterregistry.TrustPolicy{}, &clientcmdapi.Cluster{Server: "https://x", CertificateAuthorityData: []byte("ca")},
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
			assert.ErrorIs(t, err, clusterregistry.ErrRefused)
			assert.NotContains(t, err.Error(), "pwned", "the error names the setting, not its value")
		})
	}
	err := clusterregistry.UntrustedPolicy.CheckKubeconfig(caFile, files)
	assert.EqualError(t, err, "field cluster.certificate-authority: refused by the source's trust policy"+
		" (so are user.client-certificate, user.client-key)")
}

func TestTrustPolicyOnRestConfigs(t *testing.T) {
	cfg := &rest.Config{
		Host:            "https://x",
		ExecProvider:    &clientcmdapi.ExecConfig{Command: "aws"},
		BearerTokenFile: "/var/run/token",
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Proxy:           func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	err := clusterregistry.UntrustedPolicy.CheckConfig(cfg)
	assert.EqualError(t, err, "field config.execProvider: refused by the source's trust policy (so are config.bearerTokenFile)")
	err = clusterregistry.TrustPolicy{}.CheckConfig(cfg)
	assert.ErrorContains(t, err, "config.insecure, config.proxy")
	assert.NoError(t, clusterregistry.TrustedPolicy.CheckConfig(cfg))
	assert.NoError(t, clusterregistry.TrustPolicy{}.CheckConfig(&rest.Config{Host: "https://x", BearerToken: "t"}))
	assert.NoError(t, clusterregistry.TrustPolicy{}.CheckConfig(nil))
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		give string
		ok   bool
	}{
		{"prod", true},
		{"kind-kind", true},
		{"admin@prod.example.com", true},
		{"gke_project_zone_name", true},
		{"arn:aws:eks:us-east-1:123456789012:cluster", true},
		{"a", true},
		{strings.Repeat("a", 253), true},
		{"", false},
		{strings.Repeat("a", 254), false},
		{"arn:aws:eks:us-east-1:123:cluster/prod", false},
		{"has space", false},
		{"new\nline", false},
		{"-leading", false},
		{"trailing.", false},
		{"percent%2F", false},
		{"query?x", false},
		{"ünïcode", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			err := clusterregistry.ValidateName(tt.give)
			assert.Equal(t, tt.ok, err == nil, "%v", err)
		})
	}
}

func TestSyncerIgnoresInvalidNames(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("ok", "https://ok"), cluster("bad/name", "https://x"), cluster("bad\x1b[31mname", "https://x"))
	rep := f.sync(t)
	assert.Equal(t, []string{"ok"}, rep.Added)
	require.Len(t, rep.Invalid, 2)
	for _, err := range rep.Invalid {
		assert.NotContains(t, err.Error(), "\x1b", "names are quoted, so a log line stays one line")
	}
	assert.Equal(t, []string{"ok"}, f.reg.Snapshot().Names())
}

func TestMaxClustersKeepsTheLastGoodState(t *testing.T) {
	f := newFixture(t, clusterregistry.WithMaxClusters(2))
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	f.sync(t)
	f.src.Upsert(cluster("c", "https://c"))
	_, err := f.syncer.Sync(context.Background())
	require.ErrorContains(t, err, "listed 3 clusters, more than the limit of 2")
	assert.Equal(t, []string{"a", "b"}, f.reg.Snapshot().Names())
	assert.Zero(t, f.builder.releasedCount())
}

// FuzzValidateName checks that every name ValidateName accepts is safe where
// names go: a URL path segment, a header value, a metric label, a log line.
func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"prod", "", "a/b", "x\n", "admin@prod:6443", strings.Repeat("z", 300), "é"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if clusterregistry.ValidateName(name) != nil {
			return
		}
		if url.PathEscape(name) != name {
			t.Fatalf("%q needs escaping in a URL path", name)
		}
		for _, r := range name {
			if r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune(`"'\/%?#`, r) {
				t.Fatalf("%q holds %q", name, r)
			}
		}
		if len(name) == 0 || len(name) > clusterregistry.MaxNameLength {
			t.Fatalf("%q has length %d", name, len(name))
		}
	})
}

// FuzzTrustPolicy checks that a refused setting always yields a FieldError
// that wraps ErrRefused and never quotes the setting's value.
func FuzzTrustPolicy(f *testing.F) {
	f.Add("/bin/sh", "/etc/key", "/etc/ca", "http://proxy", true, uint8(0))
	f.Add("", "", "", "", false, uint8(31))
	f.Fuzz(func(t *testing.T, command, keyFile, caFile, proxy string, insecure bool, allow uint8) {
		p := clusterregistry.TrustPolicy{
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
		if !errors.As(err, &fe) || !errors.Is(err, clusterregistry.ErrRefused) {
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
