package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

var errMissing = errors.New("missing")

// kubeconfigCluster reads a Secret of the Kubeconfig or ClusterAPI format,
// through pass.
func kubeconfigCluster(sec *corev1.Secret, o *options, pass *kcfg.Pass) clusterregistry.Cluster {
	key := *o.key
	c := clusterregistry.Cluster{Name: sec.Name}
	field := "data[" + key + "]"
	if len(sec.Data) == 0 {
		c.Err = fieldErr(sec, "data", kcfg.ErrEmpty)
		return c
	}
	data, ok := sec.Data[key]
	switch {
	case !ok:
		c.Err = fieldErr(sec, field, errMissing)
		return c
	case kcfg.IsBlank(data):
		c.Err = fieldErr(sec, field, kcfg.ErrEmpty)
		return c
	}
	r := pass.One(data, kcfg.Options{Location: location(sec), Field: field, Policy: o.policy, MaxSize: o.maxSize})
	c.Config, c.Err = r.Config, r.Err
	return c
}

// argoConfig is the JSON of an Argo CD cluster Secret's config key.
type argoConfig struct {
	Username           string          `json:"username"`
	Password           string          `json:"password"`
	BearerToken        string          `json:"bearerToken"`
	TLSClientConfig    argoTLS         `json:"tlsClientConfig"`
	ExecProviderConfig *argoExec       `json:"execProviderConfig"`
	AWSAuthConfig      json.RawMessage `json:"awsAuthConfig"`
	DisableCompression bool            `json:"disableCompression"`
	ProxyURL           string          `json:"proxyUrl"`
}

// argoTLS holds base64 in JSON, as Argo CD writes it.
type argoTLS struct {
	Insecure   bool   `json:"insecure"`
	ServerName string `json:"serverName"`
	CAData     []byte `json:"caData"`
	CertData   []byte `json:"certData"`
	KeyData    []byte `json:"keyData"`
}

type argoExec struct {
	Command     string            `json:"command"`
	Args        []string          `json:"args"`
	Env         map[string]string `json:"env"`
	APIVersion  string            `json:"apiVersion"`
	InstallHint string            `json:"installHint"`
}

// argoCluster reads a Secret of Argo CD's format, through pass. A Secret with
// no usable name is listed under the Secret's own name.
func argoCluster(sec *corev1.Secret, o *options, pass *kcfg.Pass) clusterregistry.Cluster {
	c := clusterregistry.Cluster{Name: string(sec.Data["name"])}
	if c.Name == "" {
		c.Name = sec.Name
	}
	if len(sec.Data) == 0 {
		c.Err = fieldErr(sec, "data", kcfg.ErrEmpty)
		return c
	}
	if len(sec.Data["name"]) == 0 {
		c.Err = fieldErr(sec, "data[name]", kcfg.ErrEmpty)
		return c
	}
	if n := len(sec.Data["name"]) + len(sec.Data["server"]) + len(sec.Data["config"]); int64(n) > o.maxSize {
		c.Err = fieldErr(sec, "data", fmt.Errorf("name, server and config: %d bytes: %w", n, kcfg.TooBig(o.maxSize)))
		return c
	}
	// The config depends on the server and config keys alone (and the
	// policy, which is the Source's): the key of the memo.
	key := kcfg.KeyOf(sec.Data["server"], sec.Data["config"])
	if r, ok := pass.Get(key); ok {
		c.Config = r.Config
		return c
	}
	cfg, err := argoRESTConfig(sec, o.policy)
	if err != nil {
		c.Err = err
		return c
	}
	c.Config = pass.Put(key, clusterregistry.Cluster{Config: cfg}).Config
	return c
}

func argoRESTConfig(sec *corev1.Secret, policy trust.Policy) (*rest.Config, error) {
	server := string(sec.Data["server"])
	if server == "" {
		return nil, fieldErr(sec, "data[server]", kcfg.ErrEmpty)
	}
	// Neither message quotes a URL: it may carry a user and password.
	if _, err := url.Parse(server); err != nil {
		return nil, fieldErr(sec, "data[server]", errors.New("not a valid URL"))
	}
	var ac argoConfig
	if raw := sec.Data["config"]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &ac); err != nil {
			return nil, fieldErr(sec, "data[config]", kcfg.Redact(err))
		}
	}
	field := func(f string) string { return "data[config]." + f }

	cfg := &rest.Config{
		Host:               server,
		Username:           ac.Username,
		Password:           ac.Password,
		BearerToken:        ac.BearerToken,
		DisableCompression: ac.DisableCompression,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   ac.TLSClientConfig.Insecure,
			ServerName: ac.TLSClientConfig.ServerName,
			CAData:     ac.TLSClientConfig.CAData,
			CertData:   ac.TLSClientConfig.CertData,
			KeyData:    ac.TLSClientConfig.KeyData,
		},
	}
	tls := ac.TLSClientConfig
	switch {
	case ac.BearerToken != "" && (ac.Username != "" || ac.Password != ""):
		return nil, fieldErr(sec, field("bearerToken"), errors.New("set together with username/password"))
	case (len(tls.CertData) > 0) != (len(tls.KeyData) > 0):
		return nil, fieldErr(sec, field("tlsClientConfig"), errors.New("certData and keyData must be set together"))
	case tls.Insecure && len(tls.CAData) > 0:
		return nil, fieldErr(sec, field("tlsClientConfig.insecure"), errors.New("set together with caData"))
	}
	if ac.ProxyURL != "" {
		u, err := kcfg.ParseProxyURL(ac.ProxyURL)
		if err != nil {
			return nil, fieldErr(sec, field("proxyUrl"), err)
		}
		cfg.Proxy = http.ProxyURL(u)
	}
	if ac.ExecProviderConfig != nil {
		cfg.ExecProvider = &clientcmdapi.ExecConfig{} // filled in once the policy accepts it
	}
	if err := policy.CheckConfig(cfg); err != nil {
		return nil, argoRefusal(sec, err)
	}
	if e := ac.ExecProviderConfig; e != nil {
		switch {
		case e.Command == "":
			return nil, fieldErr(sec, field("execProviderConfig.command"), kcfg.ErrEmpty)
		case e.APIVersion == "":
			return nil, fieldErr(sec, field("execProviderConfig.apiVersion"), kcfg.ErrEmpty)
		}
		ec := &clientcmdapi.ExecConfig{
			Command:         e.Command,
			Args:            slices.Clone(e.Args),
			APIVersion:      e.APIVersion,
			InstallHint:     e.InstallHint,
			InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}
		for _, k := range slices.Sorted(maps.Keys(e.Env)) {
			if k == "" {
				return nil, fieldErr(sec, field("execProviderConfig.env"), errors.New("a variable has an empty name"))
			}
			ec.Env = append(ec.Env, clientcmdapi.ExecEnvVar{Name: k, Value: e.Env[k]})
		}
		cfg.ExecProvider = ec
	}
	if len(ac.AWSAuthConfig) > 0 && string(ac.AWSAuthConfig) != "null" && cfg.ExecProvider == nil {
		return nil, fieldErr(sec, field("awsAuthConfig"),
			errors.New("not supported: it needs Argo CD's argocd-k8s-auth; use execProviderConfig"))
	}
	return cfg, nil
}

// argoFields names the Argo CD settings that trust.Policy.CheckConfig names by
// their rest.Config fields.
var argoFields = map[string]string{
	"config.execProvider": "execProviderConfig",
	"config.insecure":     "tlsClientConfig.insecure",
	"config.proxy":        "proxyUrl",
}

// argoRefusal turns the policy's error into one that names the Secret and
// the setting of its config key.
func argoRefusal(sec *corev1.Secret, err error) error {
	var fe *clusterregistry.FieldError
	if !errors.As(err, &fe) {
		return fieldErr(sec, "data[config]", err)
	}
	field, ok := argoFields[fe.Field]
	if !ok {
		field = strings.TrimPrefix(fe.Field, "config.")
	}
	return fieldErr(sec, "data[config]."+field, fe.Err)
}
