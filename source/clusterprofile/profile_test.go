package clusterprofile_test

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/trust"
)

func TestProfileToCluster(t *testing.T) {
	const loc = "fleet/prod"
	ops := []clusterprofile.Provider{provider("token"), provider("gcp")}
	tests := []struct {
		name   string
		opts   []clusterprofile.Option
		status map[string]any
		want   got
	}{
		{
			name:   "the only provider",
			status: map[string]any{"accessProviders": []any{access("gcp", "https://prod.example", nil)}},
			want:   got{Name: "fleet:prod", Host: "https://prod.example", Exec: "/usr/local/bin/gcp-plugin"},
		},
		{
			name: "the operator's first among those offered",
			status: map[string]any{"accessProviders": []any{
				access("aws", "https://aws.example", nil), access("gcp", "https://gcp.example", nil), access("token", "https://token.example", nil),
			}},
			want: got{Name: "fleet:prod", Host: "https://token.example", Exec: "/usr/local/bin/token-plugin"},
		},
		{
			name:   "credentialProviders, the older field",
			status: map[string]any{"credentialProviders": []any{access("gcp", "https://old.example", nil)}},
			want:   got{Name: "fleet:prod", Host: "https://old.example", Exec: "/usr/local/bin/gcp-plugin"},
		},
		{
			name: "accessProviders before credentialProviders",
			status: map[string]any{
				"accessProviders":     []any{access("gcp", "https://new.example", nil)},
				"credentialProviders": []any{access("token", "https://old.example", nil)},
			},
			want: got{Name: "fleet:prod", Host: "https://new.example", Exec: "/usr/local/bin/gcp-plugin"},
		},
		{
			name:   "no status",
			status: nil,
			want:   got{Name: "fleet:prod", Err: loc + "|status.accessProviders"},
		},
		{
			name:   "only providers the operator does not know",
			status: map[string]any{"accessProviders": []any{access("aws", "https://aws.example", nil)}},
			want:   got{Name: "fleet:prod", Err: loc + "|status.accessProviders"},
		},
		{
			name:   "no server",
			status: map[string]any{"accessProviders": []any{access("gcp", "", nil)}},
			want:   got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp].cluster.server"},
		},
		{
			name:   "a server that is no URL, with a password",
			status: map[string]any{"accessProviders": []any{access("gcp", "https://u:pw-s3cr3t@x%zz", nil)}},
			want:   got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp].cluster.server"},
		},
		{
			name: "a proxy that is no proxy, with a password",
			status: map[string]any{"accessProviders": []any{access("gcp", "https://x",
				map[string]any{"proxy-url": "ftp://u:pw-s3cr3t@proxy"})}},
			want: got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp].cluster.proxy-url"},
		},
		{
			name: "a proxy, refused by the policy",
			opts: []clusterprofile.Option{clusterprofile.WithTrustPolicy(trust.Policy{AllowInsecure: true})},
			status: map[string]any{"accessProviders": []any{access("gcp", "https://x",
				map[string]any{"proxy-url": "http://u:pw-s3cr3t@proxy:3128"})}},
			want: got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp].cluster.proxy-url"},
		},
		{
			name: "insecure, refused by the policy",
			opts: []clusterprofile.Option{clusterprofile.WithTrustPolicy(trust.Policy{AllowProxy: true})},
			status: map[string]any{"accessProviders": []any{access("gcp", "https://x",
				map[string]any{"insecure-skip-tls-verify": true})}},
			want: got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp].cluster.insecure-skip-tls-verify"},
		},
		{
			name: "a CA file, refused by default",
			status: map[string]any{"accessProviders": []any{access("gcp", "https://x",
				map[string]any{"certificate-authority": "/etc/kubernetes/pki/ca.crt"})}},
			want: got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp].cluster.certificate-authority"},
		},
		{
			name: "a provider offered twice",
			status: map[string]any{"accessProviders": []any{
				access("gcp", "https://a.example", nil), access("gcp", "https://b.example", nil),
			}},
			want: got{Name: "fleet:prod", Err: loc + "|status.accessProviders[gcp]"},
		},
		{
			name:   "status of the wrong shape",
			status: map[string]any{"accessProviders": "gcp"},
			want:   got{Name: "fleet:prod", Err: loc + "|status"},
		},
		{
			name:   "renamed",
			opts:   []clusterprofile.Option{clusterprofile.WithRename(func(n string) string { return "hub-" + n[len("fleet:"):] })},
			status: map[string]any{"accessProviders": []any{access("gcp", "https://prod.example", nil)}},
			want:   got{Name: "hub-prod", Host: "https://prod.example", Exec: "/usr/local/bin/gcp-plugin"},
		},
		{
			name:   "renamed to an invalid name",
			opts:   []clusterprofile.Option{clusterprofile.WithRename(func(n string) string { return "fleet/prod" })},
			status: map[string]any{"accessProviders": []any{access("gcp", "https://prod.example", nil)}},
			want:   got{Name: "fleet/prod", Err: loc + "|metadata.name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, ops, tt.opts...)
			c := clusterprofile.Cluster(s, profile("fleet", "prod", tt.status), "")
			assert.Equal(t, tt.want, summarize(t, c))
		})
	}
}

func TestUnknownProviderNamesBoth(t *testing.T) {
	s := newSource(t, []clusterprofile.Provider{provider("token"), provider("gcp")})
	c := clusterprofile.Cluster(s, profile("fleet", "prod", map[string]any{
		"accessProviders": []any{access("aws", "https://x", nil), access("azure", "https://y", nil)},
	}), "")
	require.ErrorIs(t, c.Err, clusterprofile.ErrNoProvider)
	assert.EqualError(t, c.Err, `fleet/prod: field status.accessProviders: no access provider the operator knows: `+
		`offers "aws", "azure"; the operator's providers are "token", "gcp"`)
}

func TestExecConfig(t *testing.T) {
	execInfo := map[string]any{"audience": "hub", "project": "p1"}
	ext := func(name string, v any) map[string]any { return map[string]any{"name": name, "extension": v} }
	status := map[string]any{"accessProviders": []any{access("gcp", "https://prod.example", map[string]any{
		"certificate-authority-data": base64.StdEncoding.EncodeToString([]byte("ca-pem")),
		"tls-server-name":            "prod.internal",
		"extensions": []any{
			ext(clusterprofile.ExecExtension, execInfo),
			ext(clusterprofile.ArgsExtension, []any{"--project", "p1"}),
			ext(clusterprofile.EnvExtension, map[string]any{"REGION": "eu", "KEY": envSecret}),
			ext("example.com/other", "ignored"),
		},
	})}}
	op := provider("gcp")
	op.ExecConfig.InteractiveMode = clientcmdapi.AlwaysExecInteractiveMode
	op.ExecConfig.ProvideClusterInfo = true

	t.Run("by default, the profile adds no argument and no variable", func(t *testing.T) {
		s := newSource(t, []clusterprofile.Provider{op})
		c := clusterprofile.Cluster(s, profile("fleet", "prod", status), "")
		require.NoError(t, c.Err)
		assert.Equal(t, []byte("ca-pem"), c.Config.CAData)
		assert.Equal(t, "prod.internal", c.Config.ServerName)
		e := c.Config.ExecProvider
		assert.Equal(t, clientcmdapi.NeverExecInteractiveMode, e.InteractiveMode, "never interactive, whatever the provider says")
		assert.True(t, e.ProvideClusterInfo)
		assert.Equal(t, []string{"--flag"}, e.Args)
		assert.Equal(t, []clientcmdapi.ExecEnvVar{{Name: "TOKEN", Value: envSecret}}, e.Env)
		require.IsType(t, &runtime.Unknown{}, e.Config)
		assert.JSONEq(t, `{"audience": "hub", "project": "p1"}`, string(e.Config.(*runtime.Unknown).Raw))
		assert.Equal(t, clientcmdapi.AlwaysExecInteractiveMode, op.ExecConfig.InteractiveMode, "the operator's provider is not changed")
	})
	t.Run("allowed, they are added after the provider's own", func(t *testing.T) {
		s := newSource(t, []clusterprofile.Provider{op},
			clusterprofile.WithExecExtensions(clusterprofile.ExecExtensions{Args: true, Env: true}))
		c := clusterprofile.Cluster(s, profile("fleet", "prod", status), "")
		require.NoError(t, c.Err)
		e := c.Config.ExecProvider
		assert.Equal(t, []string{"--flag", "--project", "p1"}, e.Args)
		assert.Equal(t, []clientcmdapi.ExecEnvVar{{Name: "TOKEN", Value: envSecret}, {Name: "KEY", Value: envSecret}, {Name: "REGION", Value: "eu"}}, e.Env)
		assert.Equal(t, []string{"--flag"}, op.ExecConfig.Args, "the operator's provider is not changed")
	})
	t.Run("environment as a list", func(t *testing.T) {
		s := newSource(t, []clusterprofile.Provider{provider("gcp")},
			clusterprofile.WithExecExtensions(clusterprofile.ExecExtensions{Env: true}))
		c := clusterprofile.Cluster(s, profile("fleet", "prod", map[string]any{"accessProviders": []any{access("gcp", "https://x", map[string]any{
			"extensions": []any{ext(clusterprofile.EnvExtension, []any{map[string]any{"name": "A", "value": "1"}})},
		})}}), "")
		require.NoError(t, c.Err)
		assert.Equal(t, []clientcmdapi.ExecEnvVar{{Name: "TOKEN", Value: envSecret}, {Name: "A", Value: "1"}}, c.Config.ExecProvider.Env)
	})
	bad := []struct {
		name  string
		ext   map[string]any
		field string
	}{
		{"args not a list", ext(clusterprofile.ArgsExtension, map[string]any{"x": envSecret}), clusterprofile.ArgsExtension},
		{"env not an object", ext(clusterprofile.EnvExtension, []any{envSecret}), clusterprofile.EnvExtension},
		{"env with an empty name", ext(clusterprofile.EnvExtension, map[string]any{"": envSecret}), clusterprofile.EnvExtension},
		{"env that replaces client-go's", ext(clusterprofile.EnvExtension, map[string]any{"KUBERNETES_EXEC_INFO": envSecret}), clusterprofile.EnvExtension},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			s := newSource(t, []clusterprofile.Provider{provider("gcp")},
				clusterprofile.WithExecExtensions(clusterprofile.ExecExtensions{Args: true, Env: true}))
			c := clusterprofile.Cluster(s, profile("fleet", "prod", map[string]any{"accessProviders": []any{access("gcp", "https://x", map[string]any{
				"extensions": []any{b.ext},
			})}}), "")
			assert.Equal(t, got{Name: "fleet:prod", Err: "fleet/prod|status.accessProviders[gcp].cluster.extensions[" + b.field + "]"}, summarize(t, c))
		})
	}
}

func TestProxyAndCAFileWhenAllowed(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, []byte("ca-from-file"), 0o600))
	s := newSource(t, []clusterprofile.Provider{provider("gcp")}, clusterprofile.WithTrustPolicy(trust.Trusted))
	c := clusterprofile.Cluster(s, profile("fleet", "prod", map[string]any{"accessProviders": []any{access("gcp", "https://x",
		map[string]any{"proxy-url": "http://proxy:3128", "certificate-authority": caFile})}}), "")
	require.NoError(t, c.Err)
	assert.Equal(t, []byte("ca-from-file"), c.Config.CAData)
	req, err := http.NewRequest(http.MethodGet, "https://x", nil)
	require.NoError(t, err)
	u, err := c.Config.Proxy(req)
	require.NoError(t, err)
	assert.Equal(t, "http://proxy:3128", u.String())
}

func TestLabels(t *testing.T) {
	p := profile("fleet", "prod", map[string]any{
		"accessProviders": []any{access("gcp", "https://x", nil)},
		"version":         map[string]any{"kubernetes": "v1.37.2"},
		"conditions": []any{
			map[string]any{"type": "Other", "status": "True"},
			map[string]any{"type": "ControlPlaneHealthy", "status": "False", "reason": "Probe", "message": "down"},
		},
		"properties": []any{
			map[string]any{"name": "region.example.com", "value": "eu-west-1"},
			map[string]any{"name": "description", "value": "not a label value, it has spaces"},
			map[string]any{"name": "not a key", "value": "x"},
			map[string]any{"name": "team", "value": "overridden"},
			map[string]any{"name": clusterprofile.LabelControlPlaneHealthy, "value": "True"},
		},
	})
	p.SetLabels(map[string]string{"team": "platform", "x-k8s.io/cluster-manager": "spoofed"})
	p.Object["spec"] = map[string]any{"displayName": "Prod EU", "clusterManager": map[string]any{"name": "ocm"}}
	s := newSource(t, []clusterprofile.Provider{provider("gcp")})
	c := clusterprofile.Cluster(s, p, "global")
	require.NoError(t, c.Err)
	assert.Equal(t, map[string]string{
		"region.example.com":                    "eu-west-1",
		"team":                                  "platform",
		clusterprofile.LabelNamespace:           "fleet",
		clusterprofile.LabelName:                "prod",
		clusterprofile.LabelClusterManager:      "ocm",
		clusterprofile.LabelClusterSet:          "global",
		clusterprofile.LabelKubernetesVersion:   "v1.37.2",
		clusterprofile.LabelControlPlaneHealthy: "False",
	}, c.Labels, "the display name has a space: not a label value")

	p.Object["status"].(map[string]any)["conditions"] = nil
	c = clusterprofile.Cluster(s, p, "")
	assert.Equal(t, "Unknown", c.Labels[clusterprofile.LabelControlPlaneHealthy])
	_, ok := c.Labels[clusterprofile.LabelClusterSet]
	assert.False(t, ok, "no clusterset, no label")
}

// TestRevision checks that a cluster is rebuilt exactly when what reaches
// its config changes: not for a change of condition or property.
func TestRevision(t *testing.T) {
	s := newSource(t, []clusterprofile.Provider{provider("gcp")})
	status := func(server string, healthy string) map[string]any {
		return map[string]any{
			"accessProviders": []any{access("gcp", server, nil)},
			"conditions":      []any{map[string]any{"type": "ControlPlaneHealthy", "status": healthy}},
		}
	}
	a := clusterprofile.Cluster(s, profile("fleet", "prod", status("https://a", "True")), "")
	require.NoError(t, a.Err)
	require.NotEmpty(t, a.Revision)
	b := clusterprofile.Cluster(s, profile("fleet", "prod", status("https://a", "False")), "")
	assert.Equal(t, a.Revision, b.Revision)
	c := clusterprofile.Cluster(s, profile("fleet", "prod", status("https://b", "True")), "")
	assert.NotEqual(t, a.Revision, c.Revision)
	assert.NotContains(t, a.Revision, "https", "the revision is a digest")
}
