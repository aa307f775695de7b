// Package trust says which settings of a cluster description a source
// accepts: exec and auth-provider plugins, files on the service's own disk,
// insecure-skip-tls-verify and proxy-url. Sources apply a Policy before they
// run or read anything a description names; Trusted and Untrusted are their
// defaults.
package trust

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
)

// A Policy says which settings of a cluster description a source accepts.
// Cluster definitions often come from people: a dashboard's "import
// kubeconfig" form, a Secret anyone with write access to a namespace can
// create, a row in a shared database. A kubeconfig can name a command for the
// service to run (exec), an auth-provider plugin, or files on the service's
// own disk (its keys, its service-account token); accepting those from an
// untrusted store hands out a shell or the service's credentials.
//
// Sources apply their policy when they turn a description into a rest config,
// before anything is run or read; a refused setting becomes the cluster's
// error, naming the setting. The zero Policy refuses everything it covers;
// Trusted and Untrusted are the sources' defaults.
type Policy struct {
	// AllowExec accepts exec credential plugins (users[].user.exec): a
	// command the service will run.
	AllowExec bool
	// AllowAuthProvider accepts auth-provider plugins
	// (users[].user.auth-provider).
	AllowAuthProvider bool
	// AllowLocalFiles accepts references to files on the service's disk:
	// certificate-authority, client-certificate, client-key and tokenFile.
	AllowLocalFiles bool
	// AllowInsecure accepts insecure-skip-tls-verify.
	AllowInsecure bool
	// AllowProxy accepts proxy-url.
	AllowProxy bool
}

var (
	// Trusted accepts every setting. It is the default of sources that read
	// the operator's own files (kubeconfig files and directories, in-cluster).
	Trusted = Policy{AllowExec: true, AllowAuthProvider: true, AllowLocalFiles: true, AllowInsecure: true, AllowProxy: true}

	// Untrusted refuses exec and auth-provider plugins and references to
	// local files, and accepts insecure-skip-tls-verify and proxy-url. It is
	// the default of sources whose bytes users supply (Secrets, SQL rows).
	Untrusted = Policy{AllowInsecure: true, AllowProxy: true}
)

// ErrRefused is wrapped by the error of a setting that a Policy refuses.
var ErrRefused = errors.New("refused by the source's trust policy")

// CheckKubeconfig checks a kubeconfig's cluster and user entries, before
// anything they name is run or read. The error is a
// *clusterregistry.FieldError whose Field names the first refused setting;
// it wraps ErrRefused. Either entry may be nil.
func (p Policy) CheckKubeconfig(cluster *clientcmdapi.Cluster, user *clientcmdapi.AuthInfo) error {
	var refused []string
	if cluster != nil {
		if cluster.CertificateAuthority != "" && !p.AllowLocalFiles {
			refused = append(refused, "cluster.certificate-authority")
		}
		if cluster.InsecureSkipTLSVerify && !p.AllowInsecure {
			refused = append(refused, "cluster.insecure-skip-tls-verify")
		}
		if cluster.ProxyURL != "" && !p.AllowProxy {
			refused = append(refused, "cluster.proxy-url")
		}
	}
	if user != nil {
		if user.Exec != nil && !p.AllowExec {
			refused = append(refused, "user.exec")
		}
		if user.AuthProvider != nil && !p.AllowAuthProvider {
			refused = append(refused, "user.auth-provider")
		}
		if !p.AllowLocalFiles {
			if user.ClientCertificate != "" {
				refused = append(refused, "user.client-certificate")
			}
			if user.ClientKey != "" {
				refused = append(refused, "user.client-key")
			}
			if user.TokenFile != "" {
				refused = append(refused, "user.tokenFile")
			}
		}
	}
	return refusal(refused)
}

// CheckConfig checks a rest config, for sources that build one without a
// kubeconfig. Its errors are those of CheckKubeconfig, with the rest.Config
// field names.
func (p Policy) CheckConfig(c *rest.Config) error {
	if c == nil {
		return nil
	}
	var refused []string
	if c.ExecProvider != nil && !p.AllowExec {
		refused = append(refused, "config.execProvider")
	}
	if c.AuthProvider != nil && !p.AllowAuthProvider {
		refused = append(refused, "config.authProvider")
	}
	if !p.AllowLocalFiles {
		for _, f := range []struct{ name, value string }{
			{"config.caFile", c.CAFile}, {"config.certFile", c.CertFile},
			{"config.keyFile", c.KeyFile}, {"config.bearerTokenFile", c.BearerTokenFile},
		} {
			if f.value != "" {
				refused = append(refused, f.name)
			}
		}
	}
	if c.Insecure && !p.AllowInsecure {
		refused = append(refused, "config.insecure")
	}
	if c.Proxy != nil && !p.AllowProxy {
		refused = append(refused, "config.proxy")
	}
	return refusal(refused)
}

func refusal(fields []string) error {
	if len(fields) == 0 {
		return nil
	}
	err := ErrRefused
	if len(fields) > 1 {
		err = fmt.Errorf("%w (so are %s)", ErrRefused, strings.Join(fields[1:], ", "))
	}
	return &clusterregistry.FieldError{Field: fields[0], Err: err}
}
