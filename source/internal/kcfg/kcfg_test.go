package kcfg

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "nothing quoted", give: "yaml: line 3: did not find expected key", want: "yaml: line 3: did not find expected key"},
		{name: "double quotes", give: `invalid map key: map[interface {}]interface {}{"token":"s3cr3t"}`, want: "invalid map key: map[interface {}]interface {}{…:…}"},
		{name: "escaped quote inside", give: `bad "a\"s3cr3t" here`, want: "bad … here"},
		{name: "backticks", give: "cannot decode !!str `s3cr3t` as a !!int", want: "cannot decode !!str … as a !!int"},
		{name: "single quotes", give: "unknown anchor 's3cr3t' referenced", want: "unknown anchor … referenced"},
		{name: "long", give: strings.Repeat("x", 400), want: strings.Repeat("x", maxMessage) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Redact(errors.New(tt.give))
			assert.Equal(t, tt.want, err.Error())
			assert.Nil(t, errors.Unwrap(err), "the original is not reachable")
		})
	}
}

func TestMergeFirstDefinitionWins(t *testing.T) {
	one, err := Decode([]byte(`
current-context: ""
clusters: [{name: c, cluster: {server: "https://one"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: t1}}]
`), Options{Location: "one"})
	require.NoError(t, err)
	two, err := Decode([]byte(`
current-context: z
clusters: [{name: c, cluster: {server: "https://two"}}, {name: d, cluster: {server: "https://d"}}]
contexts: [{name: x, context: {cluster: d, user: u}}, {name: z, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: t2}}]
`), Options{Location: "two"})
	require.NoError(t, err)

	set := Merge(one, two)
	assert.Equal(t, "z", set.CurrentContext(), "the first non-empty current-context")
	assert.Equal(t, []string{"x", "z"}, set.Contexts())
	x, y := set.Cluster("x"), set.Cluster("z")
	require.NoError(t, x.Err)
	require.NoError(t, y.Err)
	assert.Equal(t, "https://one", x.Config.Host, "context x and cluster c from the first file")
	assert.Equal(t, "t1", x.Config.BearerToken)
	assert.Equal(t, "https://one", y.Config.Host, "cluster c of the first file, used by the second's context")
	assert.True(t, y.Default)

	stale := errors.New("stale")
	set = Merge(one.WithStale(stale), two)
	assert.Equal(t, stale, set.Cluster("z").Err, "z draws on the stale file's cluster and user")
	assert.NotNil(t, set.Cluster("z").Config, "the last good config comes along")
}

func TestClustersRenamedOntoOneName(t *testing.T) {
	f, err := Decode([]byte(`
current-context: a
clusters: [{name: c, cluster: {server: "https://c"}}]
contexts: [{name: b, context: {cluster: c, user: u}}, {name: a, context: {cluster: c, user: u}}, {name: z, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`), Options{Location: "hub/prod", Field: "data[kubeconfig]", Rename: func(c string) string {
		if c == "z" {
			return c
		}
		return "x"
	}})
	require.NoError(t, err)

	clusters := Merge(f).Clusters()
	require.Len(t, clusters, 2)
	x, z := clusters[0], clusters[1]
	assert.Equal(t, "x", x.Name)
	assert.Nil(t, x.Config)
	assert.False(t, x.Default, "the current-context is one of the clashing contexts, not the clash")
	assert.EqualError(t, x.Err, `hub/prod: field data[kubeconfig].contexts[a].name: cluster "x" is also defined by field data[kubeconfig].contexts[b].name`)
	assert.Equal(t, "z", z.Name)
	require.NoError(t, z.Err)
	assert.Equal(t, "https://c", z.Config.Host)
}
