package shard

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
)

// Defaults of Config, those of client-go's leader election.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	DefaultWeight        = 100
)

// Config says how a replica takes part in its group.
type Config struct {
	// Client reaches the hub cluster, where the replicas' Leases live
	// (coordination.k8s.io/v1). Nil: a single replica that owns every
	// cluster and writes no Lease.
	Client coordinationv1.LeasesGetter
	// Namespace of the Leases. Default: $POD_NAMESPACE, then the namespace
	// of the pod's service account, then "default".
	Namespace string
	// Group names the set of replicas that share the clusters: a DNS label
	// (lower-case letters, digits and '-'). Replicas of one service use one
	// group; Lease names are "<group>-<identity>". Required with a Client.
	Group string
	// Identity names this replica, unique in its group. Default: $POD_NAME,
	// then the host name.
	Identity string
	// Weight is this replica's share: a replica of weight 200 owns about
	// twice the clusters of one of weight 100. Default: DefaultWeight.
	Weight int

	// LeaseDuration is how long the peers wait, after they last saw this
	// replica renew its Lease, before they take its clusters.
	LeaseDuration time.Duration
	// RenewDeadline is how long this replica tries to renew its Lease before
	// it stops serving every cluster. It must be shorter than LeaseDuration:
	// the difference is the time the replica has to release its clients
	// (see Member for the clock assumptions).
	RenewDeadline time.Duration
	// RetryPeriod is how often the Lease is renewed, and the peers' Leases
	// are checked for expiry.
	RetryPeriod time.Duration

	// Clock runs every timer; tests pass a fake one. Default: the real clock.
	Clock clock.WithTicker
	// Logger receives view changes, handoffs and renewal failures.
	Logger logr.Logger
	// Observer receives the replica's status and handoffs; nil for none.
	Observer Observer
}

// withDefaults fills in the defaults and checks c.
func (c Config) withDefaults() (Config, error) {
	if c.Identity == "" {
		c.Identity = os.Getenv("POD_NAME")
	}
	if c.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("shard: Identity: not set, and no host name: %w", err)
		}
		c.Identity = h
	}
	if c.Namespace == "" {
		c.Namespace = defaultNamespace()
	}
	if c.Weight == 0 {
		c.Weight = DefaultWeight
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	var errs []error
	if c.Weight < 0 {
		errs = append(errs, fmt.Errorf("field Weight: %d is negative", c.Weight))
	}
	if c.RetryPeriod < 0 || c.RenewDeadline <= c.RetryPeriod || c.LeaseDuration <= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("RetryPeriod %v < RenewDeadline %v < LeaseDuration %v does not hold",
			c.RetryPeriod, c.RenewDeadline, c.LeaseDuration))
	}
	if c.Client != nil {
		for _, msg := range validation.IsDNS1123Label(c.Group) {
			errs = append(errs, fmt.Errorf("field Group %q: %s", c.Group, msg))
		}
		for _, msg := range validation.IsDNS1123Subdomain(leaseName(c.Group, c.Identity)) {
			errs = append(errs, fmt.Errorf("Identity %q: Lease name %q: %s", c.Identity, leaseName(c.Group, c.Identity), msg))
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("shard: %w", errors.Join(errs...))
	}
	return c, nil
}

func leaseName(group, identity string) string { return group + "-" + identity }

const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func defaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}
