package shard

import (
	"context"
	"fmt"
	"strconv"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// What a replica's Lease carries besides the holder and the renew time.
const (
	// GroupLabel holds the group; the replicas watch the Leases with theirs.
	GroupLabel = "shard.clusterregistry.io/group"
	// SettledAnnotation holds the ID of the view that the replica has
	// settled on: every client it holds is of a cluster that this view gives
	// it. A peer builds a cluster that a view gives it only once every live
	// replica of the view has settled on that view.
	SettledAnnotation = "shard.clusterregistry.io/settled"
	// ViewAnnotation holds the ID of the view the replica sees now, and
	// ReplicasAnnotation its replicas: both for people and status pages.
	ViewAnnotation     = "shard.clusterregistry.io/view"
	ReplicasAnnotation = "shard.clusterregistry.io/replicas"
	// WeightAnnotation holds the replica's weight.
	WeightAnnotation = "shard.clusterregistry.io/weight"
	// InstanceAnnotation tells two processes of one identity apart.
	InstanceAnnotation = "shard.clusterregistry.io/instance"
	// TermAnnotation counts the times the process lost its Lease (could
	// not renew it within RenewDeadline). With the instance it is the
	// replica's incarnation, which the view IDs include: a settlement
	// written before a replica lost its Lease never counts after.
	TermAnnotation = "shard.clusterregistry.io/term"
)

// record is what one replica's Lease says.
type record struct {
	name, identity string // of the Lease, of its holder
	instance, term string
	weight         int
	settled, view  string
	duration       time.Duration
	// version changes with every write of the Lease: its resourceVersion
	// and renew time.
	version string
	// rv is the resourceVersion alone: a record older than one already
	// known (a lagging watch after a fresh read) is ignored.
	rv string
}

// incarnation is the replica's incarnation in a view.
func (r record) incarnation() string { return r.instance + "/" + r.term }

// parseLease reads a peer's Lease; ok is false for a Lease that is not a
// replica's (no holder).
func parseLease(l *coordv1.Lease) (r record, ok bool) {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return r, false
	}
	r = record{
		name:     l.Name,
		identity: *l.Spec.HolderIdentity,
		instance: l.Annotations[InstanceAnnotation],
		term:     l.Annotations[TermAnnotation],
		settled:  l.Annotations[SettledAnnotation],
		view:     l.Annotations[ViewAnnotation],
		weight:   DefaultWeight,
		version:  l.ResourceVersion,
		rv:       l.ResourceVersion,
	}
	if l.Spec.RenewTime != nil {
		r.version += "/" + l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	}
	if w, err := strconv.Atoi(l.Annotations[WeightAnnotation]); err == nil && w > 0 {
		r.weight = w
	}
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		r.duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return r, true
}

// desired is what this replica writes into its Lease.
type desired struct {
	settled, view, replicas string
	term                    int
}

// writeLease creates or renews this replica's Lease with d, and returns the
// object the hub stored.
func (m *Member) writeLease(ctx context.Context, last *coordv1.Lease, d desired) (*coordv1.Lease, error) {
	c := m.cfg
	leases := c.Client.Leases(c.Namespace)
	now := metav1.NewMicroTime(c.Clock.Now())
	if last == nil {
		got, err := leases.Get(ctx, m.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			l := &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: m.name, Namespace: c.Namespace}}
			m.fill(l, d, now)
			l.Spec.AcquireTime = &now
			return leases.Create(ctx, l, metav1.CreateOptions{})
		case err != nil:
			return nil, err
		}
		if err := m.mayTake(got); err != nil {
			return nil, err
		}
		last = got
	}
	l := last.DeepCopy()
	if l.Annotations[InstanceAnnotation] != m.instance {
		l.Spec.AcquireTime = &now
	}
	m.fill(l, d, now)
	got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		// Changed or deleted behind our back: read it afresh next time.
		return nil, fmt.Errorf("the Lease %s/%s changed by another writer: %w", c.Namespace, m.name, err)
	}
	return got, err
}

// mayTake returns an error unless l is this process's own Lease, or one
// that nobody has renewed for a whole lease since this process first read it:
// another process of this identity (two replicas given one name, or a
// restarted one whose predecessor may live on) holds it until then.
func (m *Member) mayTake(l *coordv1.Lease) error {
	inst := l.Annotations[InstanceAnnotation]
	if inst == "" || inst == m.instance {
		return nil
	}
	now := m.cfg.Clock.Now()
	r, _ := parseLease(l)
	if m.foreignSince.IsZero() || r.version != m.foreignVersion {
		m.foreignVersion, m.foreignSince = r.version, now
	}
	if now.Sub(m.foreignSince) >= m.cfg.LeaseDuration {
		return nil
	}
	return fmt.Errorf("the Lease %s/%s: identity %q is held by another process (instance %s) until it expires",
		m.cfg.Namespace, m.name, m.cfg.Identity, inst)
}

func (m *Member) fill(l *coordv1.Lease, d desired, now metav1.MicroTime) {
	c := m.cfg
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[GroupLabel] = c.Group
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[InstanceAnnotation] = m.instance
	l.Annotations[TermAnnotation] = strconv.Itoa(d.term)
	l.Annotations[WeightAnnotation] = strconv.Itoa(c.Weight)
	l.Annotations[SettledAnnotation] = d.settled
	l.Annotations[ViewAnnotation] = d.view
	l.Annotations[ReplicasAnnotation] = d.replicas
	l.Spec.HolderIdentity = ptr.To(c.Identity)
	l.Spec.LeaseDurationSeconds = ptr.To(int32((c.LeaseDuration + time.Second - 1) / time.Second))
	l.Spec.RenewTime = &now
}
