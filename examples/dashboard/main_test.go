package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
)

func TestMain(m *testing.M) { clusterregistrytest.VerifyTestMain(m) }

func TestNoKubeconfigPointsAtTheDemo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "config")
	t.Setenv("KUBECONFIG", missing)
	err := run(context.Background(), "127.0.0.1:0", "")
	assert.ErrorContains(t, err, "no kubeconfig at ["+missing+"]")
	assert.ErrorContains(t, err, "go run ./demo")
}
