package kcfg

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseProxyURL(t *testing.T) {
	for _, give := range []string{"http://proxy:3128", "https://u:p4ss@proxy", "socks5://proxy:1080"} {
		u, err := ParseProxyURL(give)
		require.NoError(t, err, give)
		assert.Equal(t, give, u.String())
	}
	for _, give := range []string{"ftp://proxy", "proxy:3128", "http://u:s3cr3t@proxy:bad-port", "://"} {
		_, err := ParseProxyURL(give)
		assert.EqualError(t, err, "must be an http, https or socks5 URL", give)
	}
}
