package sqlsource_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
	"github.com/clusterregistry/clusterregistry/trust"
)

// The tests against a real database are in the sqltest module, so that this
// module does not depend on a driver.

func TestNewValidates(t *testing.T) {
	_, err := sqlsource.New(nil)
	assert.ErrorContains(t, err, "db must not be nil")

	_, err = sqlsource.New(&sql.DB{}, sqlsource.WithQuery(" "))
	assert.ErrorContains(t, err, "query must not be empty")
}

func TestNewValidatesLimits(t *testing.T) {
	_, err := sqlsource.New(&sql.DB{}, sqlsource.WithMaxSize(0), sqlsource.WithMaxClusters(0))
	assert.ErrorContains(t, err, "max size must be at least 1")
	assert.ErrorContains(t, err, "max clusters must be at least 1")
}

func TestRowPolicyAndLimits(t *testing.T) {
	const exec = `
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}}}]
`
	fieldOf := func(c clusterregistry.Cluster) string {
		var fe *clusterregistry.FieldError
		if !errors.As(c.Err, &fe) {
			return ""
		}
		return fe.Location + "|" + fe.Field
	}
	s, err := sqlsource.New(&sql.DB{})
	require.NoError(t, err)
	c := sqlsource.Row(s, "prod", []byte(exec))
	assert.ErrorIs(t, c.Err, trust.ErrRefused)
	assert.Equal(t, "row 1|kubeconfig.users[u].exec", fieldOf(c))

	s, err = sqlsource.New(&sql.DB{}, sqlsource.WithTrustPolicy(trust.Policy{AllowExec: true}))
	require.NoError(t, err)
	c = sqlsource.Row(s, "prod", []byte(exec))
	require.NoError(t, c.Err)
	assert.Equal(t, "aws", c.Config.ExecProvider.Command)

	s, err = sqlsource.New(&sql.DB{}, sqlsource.WithMaxSize(int64(len(exec)-1)))
	require.NoError(t, err)
	c = sqlsource.Row(s, "prod", []byte(exec))
	assert.Equal(t, "row 1|kubeconfig", fieldOf(c))
	assert.ErrorContains(t, c.Err, "WithMaxSize")

	// A transform may not blow a row up past the limit either.
	s, err = sqlsource.New(&sql.DB{}, sqlsource.WithMaxSize(int64(len(exec))),
		sqlsource.WithTransform(func(b []byte) ([]byte, error) { return append(b, "\n# padding"...), nil }))
	require.NoError(t, err)
	c = sqlsource.Row(s, "prod", []byte(exec))
	assert.Equal(t, "row 1|kubeconfig", fieldOf(c))
	assert.ErrorContains(t, c.Err, "WithMaxSize")

	s, err = sqlsource.New(&sql.DB{})
	require.NoError(t, err)
	c = sqlsource.Row(s, "eu/prod", []byte(exec))
	assert.Equal(t, "row 1|name", fieldOf(c))
	assert.ErrorContains(t, c.Err, "WithRename")

	s, err = sqlsource.New(&sql.DB{}, sqlsource.WithRename(kubeconfig.SanitizeName), sqlsource.WithTrustPolicy(trust.Trusted))
	require.NoError(t, err)
	c = sqlsource.Row(s, "eu/prod", []byte(exec))
	require.NoError(t, c.Err)
	assert.Equal(t, "eu-prod", c.Name)
}
