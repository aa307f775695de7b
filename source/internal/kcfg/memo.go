package kcfg

import (
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

// A Memo remembers the clusters that a source resolved from its descriptions
// (a kubeconfig, an Argo CD server and config) in its latest List, so that
// the next List resolves only the descriptions that changed: a sync then
// costs in proportion to what changed, not to what exists.
//
// Each List runs a Pass, which reads what the latest finished Pass used and
// records what it uses itself; Done makes that record the Memo's. What the
// latest listing no longer holds is dropped, so the Memo holds at most one
// listing's entries (two while a List runs).
//
// A Memo belongs to one source: its keys are the bytes of a description
// only, so everything else that changes a result (the trust policy, the size
// limit, the directory of relative paths) must be the same for every Pass.
// Only successful results are kept, never an error, whose location (such as
// "row 3") may differ next time, and never a result that read local files,
// which may change while the description stays the same.
//
// The zero Memo is empty and ready to use. It is safe for concurrent use:
// Lists may overlap, each with its own Pass, and the one that finishes last
// decides what the Memo keeps.
type Memo struct {
	// entries holds what the latest finished Pass used. The map is replaced,
	// never changed, so a Pass reads it with no lock.
	entries atomic.Pointer[map[Key]clusterregistry.Cluster]
	off     atomic.Bool
	hits    atomic.Int64
	misses  atomic.Int64
}

// A Key identifies a description in a Memo: a SHA-256 of its bytes.
type Key [sha256.Size]byte

// KeyOf returns the Key of a description made of several parts, such as an
// Argo CD Secret's server and config. Each part is hashed with its length,
// so that the same bytes split differently give another Key.
func KeyOf(parts ...[]byte) Key {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k Key
	h.Sum(k[:0])
	return k
}

// Pass starts the Pass of one List. It does not block.
func (m *Memo) Pass() *Pass {
	p := &Pass{memo: m, next: map[Key]clusterregistry.Cluster{}}
	if prev := m.entries.Load(); prev != nil && !m.off.Load() {
		p.prev = *prev
	}
	return p
}

// Len returns the number of results the Memo holds.
func (m *Memo) Len() int {
	if e := m.entries.Load(); e != nil {
		return len(*e)
	}
	return 0
}

// Stats returns how many lookups found a result and how many did not, since
// the Memo was made. Each miss is a description that was resolved.
func (m *Memo) Stats() (hits, misses int64) { return m.hits.Load(), m.misses.Load() }

// Disable makes every later lookup miss and keeps nothing, as if there were
// no Memo: the baseline of benchmarks.
func (m *Memo) Disable() { m.off.Store(true) }

// A Pass is a Memo's view for one List: it finds the results that the latest
// finished Pass used, and records the ones it uses. A nil *Pass finds and
// keeps nothing. A Pass belongs to one goroutine.
type Pass struct {
	memo *Memo
	prev map[Key]clusterregistry.Cluster // the Memo's entries when the Pass began; read only
	next map[Key]clusterregistry.Cluster // what this Pass used
}

// Get returns a copy of the result kept for k, whose Config the caller may
// change, and whether there is one.
func (p *Pass) Get(k Key) (clusterregistry.Cluster, bool) {
	if p == nil {
		return clusterregistry.Cluster{}, false
	}
	c, ok := p.next[k]
	if !ok {
		if c, ok = p.prev[k]; ok {
			p.next[k] = c
		}
	}
	if !ok {
		p.memo.misses.Add(1)
		return clusterregistry.Cluster{}, false
	}
	p.memo.hits.Add(1)
	c.Config = restconfig.Copy(c.Config)
	return c, true
}

// Put keeps c as the result of k if it is a success (Err nil, a Config set),
// and returns what the caller is to use: c itself, or a copy of it if c was
// kept. The caller must not change c afterwards. Put is for results that
// read no local file; Labels and Revision are not expected in c.
func (p *Pass) Put(k Key, c clusterregistry.Cluster) clusterregistry.Cluster {
	if p == nil || c.Err != nil || c.Config == nil || p.memo.off.Load() {
		return c
	}
	p.next[k] = c
	c.Config = restconfig.Copy(c.Config)
	return c
}

// One is One(Decode(data, opts)), found by a SHA-256 of data when an earlier
// Pass or this one resolved the same bytes. A decoding error is the Err of
// the result. Options other than Location and Field must be the same for
// every call of one Memo.
func (p *Pass) One(data []byte, opts Options) clusterregistry.Cluster {
	var k Key
	// Too big is an error, which is not kept: no need to hash it.
	memo := p != nil && (opts.MaxSize <= 0 || int64(len(data)) <= opts.MaxSize)
	if memo {
		k = sha256.Sum256(data)
		if c, ok := p.Get(k); ok {
			return c
		}
	}
	f, err := Decode(data, opts)
	if err != nil {
		return clusterregistry.Cluster{Err: err}
	}
	c := One(f)
	if memo && !f.readsFiles() {
		c = p.Put(k, c)
	}
	return c
}

// Done makes what the Pass used the Memo's entries, dropping the others. A
// List that fails does not call it, and the Memo keeps the entries of the
// latest List that succeeded. The Pass must not be used afterwards.
func (p *Pass) Done() {
	if p != nil {
		p.memo.entries.Store(&p.next)
	}
}
