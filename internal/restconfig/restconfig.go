// Package restconfig copies rest.Configs safely.
package restconfig

import (
	"bytes"
	"maps"
	"slices"

	"k8s.io/client-go/rest"
)

// Copy returns a copy of cfg that shares nothing its holder could change in
// place, and that may be made while other goroutines copy or read cfg.
//
// rest.CopyConfig is neither: it copies the exec provider's config into the
// ExecProvider struct that the original and the copy share (a data race
// between two copies of one config, and a write to the original), and it
// shares the byte slices of the TLS data, the impersonation groups and
// extras, the auth provider's config and the content's group version.
func Copy(cfg *rest.Config) *rest.Config {
	if cfg == nil {
		return nil
	}
	src := *cfg
	src.ExecProvider = nil // copied below, deeply, without writing to cfg's
	c := rest.CopyConfig(&src)
	if cfg.GroupVersion != nil {
		gv := *cfg.GroupVersion
		c.GroupVersion = &gv
	}
	c.ExecProvider = cfg.ExecProvider.DeepCopy()
	c.AuthProvider = cfg.AuthProvider.DeepCopy()
	c.Impersonate.Groups = slices.Clone(cfg.Impersonate.Groups)
	if cfg.Impersonate.Extra != nil {
		c.Impersonate.Extra = maps.Clone(cfg.Impersonate.Extra)
		for k, v := range c.Impersonate.Extra {
			c.Impersonate.Extra[k] = slices.Clone(v)
		}
	}
	tls := &c.TLSClientConfig
	tls.CAData = bytes.Clone(tls.CAData)
	tls.CertData = bytes.Clone(tls.CertData)
	tls.KeyData = bytes.Clone(tls.KeyData)
	tls.NextProtos = slices.Clone(tls.NextProtos)
	return c
}
