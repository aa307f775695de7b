package shard

import (
	"encoding/hex"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A Replica is one member of a view: a replica's identity, its weight, and
// its incarnation.
type Replica struct {
	Identity string
	Weight   int
	// Incarnation names one unbroken tenure of the identity: the process
	// (its instance) and how many times that process has lost its Lease.
	// It counts in the view's ID but not in ownership, so that a view after
	// a replica lost and renewed its Lease is never taken for the view
	// before, whose settlements no longer hold.
	Incarnation string
}

// A View is the set of live replicas that one replica sees, sorted by
// identity. Every replica that sees the same replicas with the same weights
// computes the same owner for every cluster; incarnations change only the ID.
type View struct {
	Replicas []Replica
	// ID names the view: a hash of its replicas, their weights and
	// incarnations. Replicas publish
	// the ID of the view they have settled on in their Leases.
	ID string

	seeds []uint64 // per replica, the hash of its identity
}

// NewView returns the view of replicas (in any order; duplicates of an
// identity keep the first). A weight below 1 counts as 1.
func NewView(replicas ...Replica) View {
	rs := slices.Clone(replicas)
	slices.SortStableFunc(rs, func(a, b Replica) int { return strings.Compare(a.Identity, b.Identity) })
	rs = slices.CompactFunc(rs, func(a, b Replica) bool { return a.Identity == b.Identity })
	h := fnv.New64a()
	seeds := make([]uint64, len(rs))
	for i := range rs {
		rs[i].Weight = max(rs[i].Weight, 1)
		h.Write([]byte(rs[i].Identity))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(rs[i].Weight)))
		h.Write([]byte{0})
		h.Write([]byte(rs[i].Incarnation))
		h.Write([]byte{0})
		seeds[i] = hashString(rs[i].Identity)
	}
	return View{Replicas: rs, ID: hex.EncodeToString(h.Sum(nil)), seeds: seeds}
}

// Owner returns the identity of the replica that owns cluster in v, by
// weighted rendezvous hashing: each replica scores the cluster, and the
// highest score wins. Adding or removing a replica moves only the clusters
// that it wins or held, about weight/total of them. "" if v is empty.
func (v View) Owner(cluster string) string {
	i := v.owner(hashString(cluster))
	if i < 0 {
		return ""
	}
	return v.Replicas[i].Identity
}

// owner returns the index of the owner of the cluster whose name hashes to
// ch, or -1.
func (v View) owner(ch uint64) int {
	best, bestScore := -1, math.Inf(-1)
	for i, r := range v.Replicas {
		// A uniform draw in (0, 1) per replica and cluster; -w/ln(u) is the
		// weighted score whose maximum falls to each replica in proportion
		// to its weight.
		u := (float64(mix(ch^v.seeds[i])>>11) + 0.5) / (1 << 53)
		score := -float64(r.Weight) / math.Log(u)
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// Has reports whether v has a replica of that identity.
func (v View) Has(identity string) bool {
	_, ok := slices.BinarySearchFunc(v.Replicas, identity, func(r Replica, id string) int {
		return strings.Compare(r.Identity, id)
	})
	return ok
}

// String lists the view's replicas, for logs and reasons.
func (v View) String() string {
	ids := make([]string, len(v.Replicas))
	for i, r := range v.Replicas {
		ids[i] = r.Identity
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// hashString is FNV-1a, finished by mix; it allocates nothing.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// mix is the SplitMix64 finalizer: FNV alone spreads similar names poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
