//go:build !unix

package trusttest

import "testing"

// A Tripwire needs named pipes, which this system lacks.
type Tripwire struct{ Path string }

// NewTripwire skips the test.
func NewTripwire(t testing.TB) *Tripwire {
	t.Skip("named pipes need a Unix system")
	return nil
}

// Stop reports false.
func (*Tripwire) Stop() bool { return false }
