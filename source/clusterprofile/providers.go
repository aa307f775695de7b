package clusterprofile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/yaml"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"

	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
)

// A Provider is one credential provider of the operator: the exec plugin
// that gets credentials for the clusters whose ClusterProfile offers an
// access provider of the same name.
type Provider struct {
	// Name is the access provider's name, as ClusterProfiles list it in
	// status.accessProviders[].name.
	Name string
	// ExecConfig is the plugin, as a kubeconfig's users[].user.exec gives
	// it. Its Command and APIVersion must be set. The source copies it for
	// every cluster, with InteractiveMode Never and, from the cluster's
	// extension client.authentication.k8s.io/exec, Config.
	ExecConfig *clientcmdapi.ExecConfig
}

// providerFile is the shape of the operator's provider file, as the Cluster
// Inventory API documents it: {"providers": [{"name": ..., "execConfig":
// {...}}]}, execConfig in the kubeconfig's v1 form.
type providerFile struct {
	Providers []struct {
		Name       string                  `json:"name"`
		ExecConfig *clientcmdv1.ExecConfig `json:"execConfig"`
	} `json:"providers"`
}

// maxProviderFile bounds the provider file.
const maxProviderFile = 1 << 20

// ReadProviders reads the operator's provider file at path (see
// ParseProviders).
func ReadProviders(path string) ([]Provider, error) {
	data, err := kcfg.ReadSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("provider file %s: %w", path, err)
	}
	ps, err := ParseProviders(data)
	if err != nil {
		return nil, fmt.Errorf("provider file %s: %w", path, err)
	}
	return ps, nil
}

// ParseProviders decodes the operator's provider file, JSON or YAML:
//
//	{"providers": [{"name": "google", "execConfig": {
//	    "apiVersion": "client.authentication.k8s.io/v1",
//	    "command": "/usr/local/bin/gke-gcloud-auth-plugin",
//	    "provideClusterInfo": true}}]}
//
// Every provider needs a name, unique in the file, and an execConfig with a
// command and an apiVersion. The order of the file is the order of
// preference: a ClusterProfile that offers several of the providers is
// reached with the first. Errors name the provider and the field, and quote
// no value of the file.
func ParseProviders(data []byte) ([]Provider, error) {
	if len(data) > maxProviderFile {
		return nil, fmt.Errorf("%d bytes: more than the limit of %d", len(data), maxProviderFile)
	}
	js, err := yaml.ToJSON(data)
	if err != nil {
		return nil, kcfg.Redact(err)
	}
	var f providerFile
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, kcfg.Redact(err)
	}
	if len(f.Providers) == 0 {
		return nil, errors.New("field providers: must not be empty")
	}
	out := make([]Provider, 0, len(f.Providers))
	for i, p := range f.Providers {
		p := Provider{Name: p.Name}
		if src := f.Providers[i].ExecConfig; src != nil {
			p.ExecConfig = &clientcmdapi.ExecConfig{}
			if err := clientcmdv1.Convert_v1_ExecConfig_To_api_ExecConfig(src, p.ExecConfig, nil); err != nil {
				return nil, fmt.Errorf("field %s.execConfig: %w", providerField(i, p.Name), kcfg.Redact(err))
			}
		}
		out = append(out, p)
	}
	if err := checkProviders(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkProviders checks what New needs of the providers.
func checkProviders(ps []Provider) error {
	if len(ps) == 0 {
		return errors.New("no providers: a ClusterProfile's credentials come only from the operator's providers")
	}
	seen := map[string]bool{}
	for i, p := range ps {
		field := providerField(i, p.Name)
		switch {
		case p.Name == "":
			return fmt.Errorf("field %s.name: %w", field, kcfg.ErrEmpty)
		case seen[p.Name]:
			return fmt.Errorf("field %s: defined more than once", field)
		case p.ExecConfig == nil:
			return fmt.Errorf("field %s.execConfig: %w", field, kcfg.ErrEmpty)
		case p.ExecConfig.Command == "":
			return fmt.Errorf("field %s.execConfig.command: %w", field, kcfg.ErrEmpty)
		case p.ExecConfig.APIVersion == "":
			return fmt.Errorf("field %s.execConfig.apiVersion: %w", field, kcfg.ErrEmpty)
		}
		for _, e := range p.ExecConfig.Env {
			if e.Name == "" {
				return fmt.Errorf("field %s.execConfig.env: a variable has an empty name", field)
			}
		}
		seen[p.Name] = true
	}
	return nil
}

// providerField names the provider at index i, by its name if it has one.
func providerField(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("providers[%d]", i)
	}
	return "providers[" + name + "]"
}
