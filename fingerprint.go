package clusterregistry

import (
	"bytes"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"

	"k8s.io/client-go/rest"
)

// sameDescription reports whether listing c needs no new client beside one
// built from config and revision. When both sides carry a revision, the
// revisions decide. Otherwise every connection, authentication and client
// setting of the two configs is compared exactly: no hash is kept, so no
// collision can hide a change and no digest of a credential lingers.
//
// Functions in a config (Dial, Proxy, WrapTransport) compare by their code, and
// interfaces (Transport, RateLimiter) by identity; a source that changes a
// cluster only through such values should set Cluster.Revision.
func sameDescription(config *rest.Config, revision string, c Cluster) bool {
	if revision != "" && c.Revision != "" {
		return revision == c.Revision
	}
	return sameConfig(config, c.Config)
}

func sameConfig(a, b *rest.Config) bool {
	if a == nil || b == nil || a == b {
		return a == b
	}
	// Cheap fields first; reflection only where a value is set.
	return a.Host == b.Host &&
		a.APIPath == b.APIPath &&
		a.AcceptContentTypes == b.AcceptContentTypes &&
		a.ContentType == b.ContentType &&
		samePointee(a.GroupVersion, b.GroupVersion) &&
		sameValue(a.NegotiatedSerializer, b.NegotiatedSerializer) &&
		a.Username == b.Username &&
		a.Password == b.Password &&
		a.BearerToken == b.BearerToken &&
		a.BearerTokenFile == b.BearerTokenFile &&
		sameImpersonation(a.Impersonate, b.Impersonate) &&
		samePointee(a.AuthProvider, b.AuthProvider) &&
		sameValue(a.AuthConfigPersister, b.AuthConfigPersister) &&
		samePointee(a.ExecProvider, b.ExecProvider) &&
		sameTLS(a.TLSClientConfig, b.TLSClientConfig) &&
		a.UserAgent == b.UserAgent &&
		a.DisableCompression == b.DisableCompression &&
		sameValue(a.Transport, b.Transport) &&
		(a.WrapTransport == nil && b.WrapTransport == nil || sameFunc(a.WrapTransport, b.WrapTransport)) &&
		a.QPS == b.QPS &&
		a.Burst == b.Burst &&
		sameValue(a.RateLimiter, b.RateLimiter) &&
		sameValue(a.WarningHandler, b.WarningHandler) &&
		sameValue(a.WarningHandlerWithContext, b.WarningHandlerWithContext) &&
		a.Timeout == b.Timeout &&
		(a.Dial == nil && b.Dial == nil || sameFunc(a.Dial, b.Dial)) &&
		sameProxy(a, b)
}

func sameTLS(a, b rest.TLSClientConfig) bool {
	return a.Insecure == b.Insecure &&
		a.ServerName == b.ServerName &&
		a.CertFile == b.CertFile &&
		a.KeyFile == b.KeyFile &&
		a.CAFile == b.CAFile &&
		bytes.Equal(a.CertData, b.CertData) &&
		bytes.Equal(a.KeyData, b.KeyData) &&
		bytes.Equal(a.CAData, b.CAData) &&
		slices.Equal(a.NextProtos, b.NextProtos)
}

func sameImpersonation(a, b rest.ImpersonationConfig) bool {
	return a.UserName == b.UserName &&
		a.UID == b.UID &&
		slices.Equal(a.Groups, b.Groups) &&
		maps.EqualFunc(a.Extra, b.Extra, slices.Equal)
}

// samePointee compares what two pointers point to.
func samePointee[T any](a, b *T) bool {
	if a == nil || b == nil || a == b {
		return a == b
	}
	return reflect.DeepEqual(*a, *b)
}

// sameValue compares two interface values by identity where their type allows
// it, and deeply where it does not.
func sameValue(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	switch {
	case ta != tb:
		return false
	case ta.Kind() == reflect.Func:
		return sameFunc(a, b)
	case ta.Comparable():
		return a == b
	default:
		return reflect.DeepEqual(a, b)
	}
}

// sameFunc compares two functions by their code.
func sameFunc(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.IsNil() || vb.IsNil() {
		return va.IsNil() == vb.IsNil()
	}
	return va.Pointer() == vb.Pointer()
}

// sameProxy compares the configs' proxy functions. Functions of the same code
// may differ by what they capture (http.ProxyURL, which clientcmd uses for
// proxy-url, returns one closure for every URL), so those are also asked
// for their proxy for a request to the cluster.
func sameProxy(a, b *rest.Config) bool {
	if a.Proxy == nil || b.Proxy == nil {
		return a.Proxy == nil && b.Proxy == nil
	}
	if !sameFunc(a.Proxy, b.Proxy) {
		return false
	}
	req, err := http.NewRequest(http.MethodGet, a.Host, nil)
	if err != nil {
		return true // unparsable host: the config fails to build either way
	}
	ua, errA := a.Proxy(req)
	ub, errB := b.Proxy(req)
	return (errA == nil) == (errB == nil) && urlString(ua) == urlString(ub)
}

func urlString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}
