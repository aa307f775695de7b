package clusterprofile

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
)

// Extensions of an access provider's cluster entry that the source reads.
const (
	// ExecExtension is handed to the exec plugin as its cluster's Config
	// (KUBERNETES_EXEC_INFO's spec.cluster.config, when the provider's
	// execConfig sets provideClusterInfo).
	ExecExtension = "client.authentication.k8s.io/exec"
	// ArgsExtension adds arguments to the plugin's: a JSON list of strings.
	// Applied only with WithExecExtensions.
	ArgsExtension = "multicluster.x-k8s.io/clusterprofiles/auth/exec/additional-args"
	// EnvExtension adds environment variables to the plugin's: a JSON object
	// of names to values, or a list of {"name": ..., "value": ...}. Applied
	// only with WithExecExtensions.
	EnvExtension = "multicluster.x-k8s.io/clusterprofiles/auth/exec/additional-envs"
)

// profile is what the source reads of a ClusterProfile.
type profile struct {
	Spec struct {
		DisplayName    string `json:"displayName"`
		ClusterManager struct {
			Name string `json:"name"`
		} `json:"clusterManager"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		Version struct {
			Kubernetes string `json:"kubernetes"`
		} `json:"version"`
		Properties []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"properties"`
		AccessProviders     []accessProvider `json:"accessProviders"`
		CredentialProviders []accessProvider `json:"credentialProviders"`
	} `json:"status"`
}

// accessProvider is one way to reach the cluster: a provider's name and a
// kubeconfig cluster entry.
type accessProvider struct {
	Name    string              `json:"name"`
	Cluster clientcmdv1.Cluster `json:"cluster"`
}

// decode reads the parts of u the source uses; its error names the part.
func decode(u *unstructured.Unstructured) (*profile, error) {
	var p profile
	for _, part := range []struct {
		name string
		into any
	}{{"spec", &p.Spec}, {"status", &p.Status}} {
		v, ok := u.Object[part.name]
		if !ok || v == nil {
			continue
		}
		raw, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(raw, part.into)
		}
		if err != nil {
			return nil, &clusterregistry.FieldError{Location: location(u), Field: part.name, Err: kcfg.Redact(err)}
		}
	}
	return &p, nil
}

func location(u *unstructured.Unstructured) string { return u.GetNamespace() + "/" + u.GetName() }

// providers returns the access providers of p and the field that lists
// them: status.accessProviders, or the older status.credentialProviders
// when there are none.
func (p *profile) providers() ([]accessProvider, string) {
	if len(p.Status.AccessProviders) == 0 && len(p.Status.CredentialProviders) > 0 {
		return p.Status.CredentialProviders, "status.credentialProviders"
	}
	return p.Status.AccessProviders, "status.accessProviders"
}

// health returns the status of the condition ControlPlaneHealthy: True,
// False or Unknown (also when the profile has no such condition).
func (p *profile) health() string {
	for _, c := range p.Status.Conditions {
		if c.Type == ConditionControlPlaneHealthy {
			switch c.Status {
			case "True", "False":
				return c.Status
			}
			return "Unknown"
		}
	}
	return "Unknown"
}

// labels returns the cluster's labels: the profile's properties that are
// valid labels, the profile's own labels, then the source's.
func (s *Source) labels(u *unstructured.Unstructured, p *profile, clusterSet string) map[string]string {
	out := map[string]string{}
	for _, prop := range p.Status.Properties {
		if validLabel(prop.Name, prop.Value) {
			out[prop.Name] = prop.Value
		}
	}
	for k, v := range u.GetLabels() {
		out[k] = v
	}
	set := func(k, v string) {
		if v != "" && validLabel(k, v) {
			out[k] = v
		}
	}
	set(LabelNamespace, u.GetNamespace())
	set(LabelName, u.GetName())
	set(LabelClusterManager, p.Spec.ClusterManager.Name)
	set(LabelClusterSet, clusterSet)
	set(LabelDisplayName, p.Spec.DisplayName)
	set(LabelKubernetesVersion, p.Status.Version.Kubernetes)
	out[LabelControlPlaneHealthy] = p.health()
	return out
}

func validLabel(k, v string) bool {
	return len(validation.IsQualifiedName(k)) == 0 && len(validation.IsValidLabelValue(v)) == 0
}

// restConfig builds the config of the first of the operator's providers
// that p offers, and the revision that changes exactly when the config
// does.
func (s *Source) restConfig(u *unstructured.Unstructured, p *profile) (*rest.Config, string, error) {
	loc := location(u)
	offered, listField := p.providers()
	if len(offered) == 0 {
		return nil, "", &clusterregistry.FieldError{Location: loc, Field: listField, Err: kcfg.ErrEmpty}
	}
	for _, prov := range s.providers {
		i := slices.IndexFunc(offered, func(a accessProvider) bool { return a.Name == prov.Name })
		if i < 0 {
			continue
		}
		field := listField + "[" + prov.Name + "].cluster"
		if slices.ContainsFunc(offered[i+1:], func(a accessProvider) bool { return a.Name == prov.Name }) {
			return nil, "", &clusterregistry.FieldError{Location: loc, Field: listField + "[" + prov.Name + "]",
				Err: errors.New("defined more than once")}
		}
		cfg, err := s.providerConfig(prov, offered[i].Cluster, func(f string, err error) error {
			return &clusterregistry.FieldError{Location: loc, Field: field + f, Err: err}
		})
		if err != nil {
			return nil, "", err
		}
		raw, err := json.Marshal(offered[i])
		if err != nil {
			return nil, "", &clusterregistry.FieldError{Location: loc, Field: field, Err: kcfg.Redact(err)}
		}
		k := kcfg.KeyOf([]byte(prov.Name), raw)
		return cfg, hex.EncodeToString(k[:]), nil
	}
	names := make([]string, len(offered))
	for i, a := range offered {
		names[i] = a.Name
	}
	mine := make([]string, len(s.providers))
	for i, p := range s.providers {
		mine[i] = p.Name
	}
	return nil, "", &clusterregistry.FieldError{Location: loc, Field: listField, Err: fmt.Errorf(
		"%w: offers %s; the operator's providers are %s", ErrNoProvider, quoteAll(names), quoteAll(mine))}
}

// ErrNoProvider is wrapped by the error of a ClusterProfile that offers
// none of the operator's providers.
var ErrNoProvider = errors.New("no access provider the operator knows")

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		if len(n) > 64 {
			n = strings.ToValidUTF8(n[:64], "") + "…"
		}
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// providerConfig builds the config of cluster entry c reached with prov.
// fieldErr names a field of c.
func (s *Source) providerConfig(prov Provider, c clientcmdv1.Cluster, fieldErr func(string, error) error) (*rest.Config, error) {
	if c.Server == "" {
		return nil, fieldErr(".server", kcfg.ErrEmpty)
	}
	// Neither message quotes the URL: it may carry a user and password.
	if u, err := url.Parse(c.Server); err != nil || u.Host == "" {
		return nil, fieldErr(".server", errors.New("not a valid URL"))
	}
	// The trust policy first: nothing the entry names is read before it.
	check := c
	check.Extensions = nil
	var ac clientcmdapi.Cluster
	if err := clientcmdv1.Convert_v1_Cluster_To_api_Cluster(&check, &ac, nil); err != nil {
		return nil, fieldErr("", kcfg.Redact(err))
	}
	if err := s.opts.policy.CheckKubeconfig(&ac, nil); err != nil {
		var fe *clusterregistry.FieldError
		if errors.As(err, &fe) {
			return nil, fieldErr(strings.TrimPrefix(fe.Field, "cluster"), fe.Err)
		}
		return nil, fieldErr("", err)
	}
	cfg := &rest.Config{
		Host:               c.Server,
		DisableCompression: c.DisableCompression,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   c.InsecureSkipTLSVerify,
			ServerName: c.TLSServerName,
			CAData:     c.CertificateAuthorityData,
		},
	}
	if c.InsecureSkipTLSVerify && (len(c.CertificateAuthorityData) > 0 || c.CertificateAuthority != "") {
		return nil, fieldErr(".insecure-skip-tls-verify", errors.New("set together with a certificate authority"))
	}
	if c.CertificateAuthority != "" {
		if len(c.CertificateAuthorityData) > 0 {
			return nil, fieldErr(".certificate-authority", errors.New("set together with certificate-authority-data"))
		}
		data, err := kcfg.ReadSmallFile(c.CertificateAuthority)
		if err != nil {
			return nil, fieldErr(".certificate-authority", err)
		}
		cfg.CAData = data
	}
	if c.ProxyURL != "" {
		u, err := kcfg.ParseProxyURL(c.ProxyURL)
		if err != nil {
			return nil, fieldErr(".proxy-url", err)
		}
		cfg.Proxy = http.ProxyURL(u)
	}
	exec := prov.ExecConfig.DeepCopy()
	exec.InteractiveMode = clientcmdapi.NeverExecInteractiveMode
	exec.Config = nil
	seen := map[string]bool{}
	for _, e := range c.Extensions {
		field := ".extensions[" + e.Name + "]"
		if seen[e.Name] {
			return nil, fieldErr(field, errors.New("defined more than once"))
		}
		seen[e.Name] = true
		switch e.Name {
		case ExecExtension:
			if len(e.Extension.Raw) > 0 {
				exec.Config = &runtime.Unknown{Raw: e.Extension.Raw, ContentType: runtime.ContentTypeJSON}
			}
		case ArgsExtension:
			if !s.opts.extensions.Args {
				continue // ignored unless the operator allows it
			}
			var args []string
			if err := json.Unmarshal(e.Extension.Raw, &args); err != nil {
				return nil, fieldErr(field, errors.New("must be a JSON list of strings"))
			}
			exec.Args = append(exec.Args, args...)
		case EnvExtension:
			if !s.opts.extensions.Env {
				continue
			}
			env, err := parseEnv(e.Extension.Raw)
			if err != nil {
				return nil, fieldErr(field, err)
			}
			exec.Env = append(exec.Env, env...)
		}
	}
	cfg.ExecProvider = exec
	return cfg, nil
}

// parseEnv reads the value of EnvExtension. Its errors quote no value.
func parseEnv(raw []byte) ([]clientcmdapi.ExecEnvVar, error) {
	var env []clientcmdapi.ExecEnvVar
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err == nil {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			env = append(env, clientcmdapi.ExecEnvVar{Name: k, Value: m[k]})
		}
	} else {
		var list []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New(`must be a JSON object of names to values, or a list of {"name": ..., "value": ...}`)
		}
		for _, e := range list {
			env = append(env, clientcmdapi.ExecEnvVar{Name: e.Name, Value: e.Value})
		}
	}
	for _, e := range env {
		switch {
		case e.Name == "":
			return nil, errors.New("a variable has an empty name")
		case strings.ContainsAny(e.Name, "=\x00"):
			return nil, fmt.Errorf("variable %q: not a valid name", e.Name)
		case e.Name == "KUBERNETES_EXEC_INFO":
			return nil, errors.New("variable KUBERNETES_EXEC_INFO: set by client-go, not by a profile")
		}
	}
	return env, nil
}
