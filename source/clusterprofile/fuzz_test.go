package clusterprofile_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/source/internal/credcheck"
	"github.com/clusterregistry/clusterregistry/trust"
)

// FuzzClusterProfile checks that no ClusterProfile, whatever its namespace,
// name and status, makes the Source panic, list a usable cluster under an
// invalid name or with a refused setting, or quote a credential: a proxy's
// or server's password, or an environment value of the operator's provider
// or of the profile's extension.
func FuzzClusterProfile(f *testing.F) {
	f.Add("fleet", "prod", []byte(`{"accessProviders": [{"name": "gcp", "cluster": {"server": "https://x", "certificate-authority-data": "Y2E="}}]}`))
	f.Add("fleet", "prod", []byte(`{"credentialProviders": [{"name": "token", "cluster": {"server": "https://u:pw-s3cr3tvalue@x%zz"}}]}`))
	f.Add("", "", []byte(`{"accessProviders": [{"name": "gcp", "cluster": {"server": "https://x", "proxy-url": "ftp://u:pw-s3cr3tvalue@p", "insecure-skip-tls-verify": true}}]}`))
	f.Add("a", "b", []byte(`{"accessProviders": [{"name": "gcp", "cluster": {"server": "https://x", "certificate-authority": "/etc/passwd", "extensions": [
		{"name": "multicluster.x-k8s.io/clusterprofiles/auth/exec/additional-envs", "extension": {"K": "env-s3cr3tvalue"}},
		{"name": "multicluster.x-k8s.io/clusterprofiles/auth/exec/additional-envs", "extension": [{"name": "", "value": "env-s3cr3tvalue"}]},
		{"name": "multicluster.x-k8s.io/clusterprofiles/auth/exec/additional-args", "extension": ["--a", 1]},
		{"name": "client.authentication.k8s.io/exec", "extension": {"x": 1}}]}}]}`))
	f.Add("a", "b/c", []byte(`{"accessProviders": "x", "conditions": [{"type": "ControlPlaneHealthy", "status": 1}]}`))
	f.Add("a", "b", []byte(`{"properties": [{"name": "k", "value": "v"}], "version": {"kubernetes": "v1.37.2"}, "accessProviders": [{"name": "aws"}]}`))
	policy := trust.Policy{AllowProxy: true}
	s, err := clusterprofile.New(newClient(), []clusterprofile.Provider{provider("token"), provider("gcp")},
		clusterprofile.WithTrustPolicy(policy),
		clusterprofile.WithExecExtensions(clusterprofile.ExecExtensions{Args: true, Env: true}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, namespace, name string, status []byte) {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetNamespace(namespace)
		u.SetName(name)
		var st any
		if json.Unmarshal(status, &st) == nil {
			u.Object["status"] = st
		}
		c := clusterprofile.Cluster(s, u, "")
		if c.Name != clusterprofile.ClusterName(namespace, name) {
			t.Fatalf("cluster named %q", c.Name)
		}
		if c.Err == nil {
			// The Policy's AllowExec is not consulted: the plugin is the
			// operator's. Check the rest.
			cfg := *c.Config
			cfg.ExecProvider = nil
			if err := policy.CheckConfig(&cfg); err != nil {
				t.Fatalf("a refused setting reached the config: %v", err)
			}
			if c.Config.ExecProvider == nil || c.Config.ExecProvider.InteractiveMode != "Never" {
				t.Fatalf("exec provider %+v", c.Config.ExecProvider)
			}
		}
		secrets := []string{envSecret}
		var parsed struct {
			AccessProviders []struct {
				Cluster struct {
					Server     string `json:"server"`
					ProxyURL   string `json:"proxy-url"`
					Extensions []struct {
						Extension json.RawMessage `json:"extension"`
					} `json:"extensions"`
				} `json:"cluster"`
			} `json:"accessProviders"`
		}
		if json.Unmarshal(status, &parsed) == nil {
			for _, a := range parsed.AccessProviders {
				secrets = append(secrets, a.Cluster.Server, a.Cluster.ProxyURL, password(a.Cluster.Server), password(a.Cluster.ProxyURL))
				for _, e := range a.Cluster.Extensions {
					var env map[string]string
					if json.Unmarshal(e.Extension, &env) == nil {
						for _, v := range env {
							secrets = append(secrets, v)
						}
					}
				}
			}
		}
		credcheck.Cluster(t, c, nil, namespace+"\x00"+name+"\x00token\x00gcp", secrets...)
	})
}

// password returns the password of raw, a URL, if it has one.
func password(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}
