package clusterregistry

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrClusterNotFound is wrapped by the error of a lookup for a name the
	// Registry does not know. Match it with errors.Is.
	ErrClusterNotFound = errors.New("cluster not found")

	// ErrNoDefaultCluster is wrapped by the error of Registry.Default when no
	// cluster is the default: none is marked, or several are.
	ErrNoDefaultCluster = errors.New("no default cluster")

	// ErrStopped is returned by Syncer methods called after Run has returned
	// or Close was called, and wrapped by the errors of the Registry's
	// lookups and of Subscription.Next from then on.
	ErrStopped = errors.New("syncer stopped")
)

// A ClusterError is the latest failure of one cluster: its description could
// not be used, or its client could not be built. The Registry keeps it beside
// the cluster's last good client, if there is one. Registry.Get returns it for
// a cluster that has no client at all.
type ClusterError struct {
	// Name is the cluster's name.
	Name string
	// Err is what went wrong. It never contains a credential.
	Err error
	// Since is when the current run of failures began.
	Since time.Time
	// Attempts counts the consecutive failed attempts to build a client from
	// the current description. It is 0 when the description itself was
	// unusable, so no build was tried.
	Attempts int
	// NextRetry is when the Syncer will build again if the description stays
	// the same; a changed description is built at the next sync. It is zero
	// when no retry is scheduled.
	NextRetry time.Time
}

// Error names the cluster and says what went wrong.
func (e *ClusterError) Error() string { return fmt.Sprintf("cluster %q: %v", e.Name, e.Err) }

// Unwrap returns e.Err.
func (e *ClusterError) Unwrap() error { return e.Err }

// A FieldError says which field of a cluster description is unusable and,
// when the source knows it, where the description came from (a file path, a
// Secret's namespace/name, a table row). Sources put it in Cluster.Err.
type FieldError struct {
	// Location is where the description came from; it may be empty.
	Location string
	// Field names the unusable field, such as "config.host" or
	// "contexts[prod].cluster".
	Field string
	// Err says what is wrong with it, never quoting a credential.
	Err error
}

// Error names the location, if known, and the field.
func (e *FieldError) Error() string {
	if e.Location == "" {
		return fmt.Sprintf("field %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s: field %s: %v", e.Location, e.Field, e.Err)
}

// Unwrap returns e.Err.
func (e *FieldError) Unwrap() error { return e.Err }
