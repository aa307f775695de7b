package kubeconfig_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/trust"
)

// TestInvalidUTF8YAMLFailsJSONKeepsTheGoodContexts checks what the package
// documentation says of invalid UTF-8: in YAML it fails the whole document;
// JSON decodes, the invalid byte replaced by U+FFFD, and every context is
// listed.
func TestInvalidUTF8YAMLFailsJSONKeepsTheGoodContexts(t *testing.T) {
	const bad = "https://b\xff.example"
	yamlDoc := kubeconfigYAML("", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", bad})
	_, err := kubeconfig.Parse([]byte(yamlDoc), "upload", kubeconfig.WithTrustPolicy(trust.Trusted))
	assert.ErrorContains(t, err, "upload: field kubeconfig: yaml: invalid leading UTF-8 octet", "YAML: the whole document fails")

	jsonDoc := `{"clusters":[{"name":"a","cluster":{"server":"https://a.example"}},{"name":"b","cluster":{"server":"` + bad + `"}}],` +
		`"contexts":[{"name":"a","context":{"cluster":"a","user":"u"}},{"name":"b","context":{"cluster":"b","user":"u"}}],` +
		`"users":[{"name":"u","user":{"token":"tok-s3cr3t"}}]}`
	clusters, err := kubeconfig.Parse([]byte(jsonDoc), "upload", kubeconfig.WithTrustPolicy(trust.Trusted))
	require.NoError(t, err, "JSON: the document decodes")
	require.Len(t, clusters, 2)
	assert.NoError(t, clusters[0].Err, "JSON: the good context carries on")
	assert.Equal(t, "https://a.example", clusters[0].Config.Host)
	require.NoError(t, clusters[1].Err)
	assert.Equal(t, "https://b\uFFFD.example", clusters[1].Config.Host, "JSON: the invalid byte becomes U+FFFD")
}
