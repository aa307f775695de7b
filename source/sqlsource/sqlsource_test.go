package sqlsource_test

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

// The tests against a real database are in the sqltest module, so that this
// module does not depend on a driver.

func TestNewValidates(t *testing.T) {
	_, err := sqlsource.New(nil)
	assert.ErrorContains(t, err, "db must not be nil")

	_, err = sqlsource.New(&sql.DB{}, sqlsource.WithQuery(" "))
	assert.ErrorContains(t, err, "query must not be empty")
}
