// Package memohook reaches the kubeconfig memo of a sqlsource.Source, which
// package sqlsource keeps unexported, for the tests and benchmarks of the
// sqltest module: they count decodes, check the memo's size, and disable it
// for a baseline.
package memohook

import "github.com/clusterregistry/clusterregistry/source/internal/kcfg"

// Of returns the memo of src, a *sqlsource.Source. Package sqlsource sets it
// when it is initialised.
var Of func(src any) *kcfg.Memo
