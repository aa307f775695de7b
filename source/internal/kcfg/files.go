package kcfg

import (
	"errors"
	"net/url"

	"github.com/clusterregistry/clusterregistry/source/internal/safefile"
)

// maxFileSize bounds a file that ReadSmallFile reads: certificates and keys
// are a few kilobytes.
const maxFileSize = 1 << 20

// ReadSmallFile reads the regular file at path, of at most 1 MiB, such as a
// certificate or a key that a kubeconfig refers to; see safefile.Read.
func ReadSmallFile(path string) ([]byte, error) { return safefile.Read(path, maxFileSize) }

// ParseProxyURL parses a cluster's proxy URL, which must be an http, https or
// socks5 URL, as client-go requires. Its error does not quote the URL, which
// may carry a user and password.
func ParseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
		return nil, errProxyURL
	}
	return u, nil
}

var errProxyURL = errors.New("must be an http, https or socks5 URL")
