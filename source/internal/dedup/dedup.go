// Package dedup turns the definitions of a source's clusters into its
// listing: sorted by name, with one error entry for a name that several
// definitions give. Every source of this module resolves its name clashes
// with it, so that they all say the same thing in the same way.
package dedup

import (
	"fmt"
	"slices"
	"strings"

	"github.com/clusterregistry/clusterregistry"
)

// A Def is one definition of a cluster: the cluster as it is defined, and
// where.
type Def struct {
	Cluster clusterregistry.Cluster
	// Location is where the definition is: a file path, a Secret's
	// namespace/name, a table row ("row 3"), a source ("source 1").
	Location string
	// Field is the field at Location that gives the cluster its name, such
	// as "metadata.name" or "contexts[prod].name".
	Field string
}

// Clusters returns the clusters of defs sorted by name; clusters of the
// same name keep the order of defs. A name that two or more origins (a
// Location and Field) give is listed once, as a cluster with:
//   - Err set to a *clusterregistry.FieldError at the first origin, whose
//     message names the cluster and every other origin;
//   - no Config and no Revision, so nothing of any definition is built and
//     no credential comes along;
//   - Default false: the definitions disagree, so none of their flags is
//     taken. A source that names its default by name (WithDefault) sets it
//     afterwards, as it does for any other cluster;
//   - the Labels of the first definition, so that a filter by label
//     (compose.Filter) keeps the cluster, and with it its last good client
//     and the error, in view instead of dropping it. The Syncer keeps the
//     first entry's labels of a name listed twice for the same reason.
//
// A name that one origin alone gives more than once (only a source merged by
// compose can) is listed as many times, unchanged: the Syncer reports it.
//
// Clusters does not change defs or the clusters they hold.
func Clusters(defs []Def) []clusterregistry.Cluster {
	sorted := slices.Clone(defs)
	slices.SortStableFunc(sorted, func(a, b Def) int { return strings.Compare(a.Cluster.Name, b.Cluster.Name) })
	out := make([]clusterregistry.Cluster, 0, len(sorted))
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].Cluster.Name == sorted[i].Cluster.Name {
			j++
		}
		same := sorted[i:j]
		if others := otherOrigins(same); len(others) > 0 {
			out = append(out, clash(same[0], others))
		} else {
			for _, d := range same {
				out = append(out, d.Cluster)
			}
		}
		i = j
	}
	return out
}

// otherOrigins returns the origins of same, all of one name, that differ
// from the first one's, each once, in order.
func otherOrigins(same []Def) []Def {
	type origin struct{ location, field string }
	seen := map[origin]bool{{same[0].Location, same[0].Field}: true}
	var others []Def
	for _, d := range same[1:] {
		o := origin{d.Location, d.Field}
		if !seen[o] {
			seen[o] = true
			others = append(others, d)
		}
	}
	return others
}

// clash returns the one cluster that stands for first and others.
func clash(first Def, others []Def) clusterregistry.Cluster {
	where := make([]string, len(others))
	sep := ", "
	for i, o := range others {
		where[i] = describe(first, o)
		if strings.Contains(where[i], ", ") {
			sep = "; "
		}
	}
	return clusterregistry.Cluster{
		Name:   first.Cluster.Name,
		Labels: first.Cluster.Labels,
		Err: &clusterregistry.FieldError{
			Location: first.Location,
			Field:    first.Field,
			Err:      fmt.Errorf("cluster %s is also defined by %s", quote(first.Cluster.Name), strings.Join(where, sep)),
		},
	}
}

// describe names o as briefly as it can beside first, whose location and
// field the FieldError already names.
func describe(first, o Def) string {
	switch {
	case o.Location == "" || o.Location == first.Location:
		return "field " + o.Field
	case o.Field == first.Field:
		return o.Location
	}
	return o.Location + ", field " + o.Field
}

// maxQuoted bounds the name that a message quotes: an invalid name may be
// long.
const maxQuoted = 64

func quote(name string) string {
	if len(name) > maxQuoted {
		return fmt.Sprintf("%q…", strings.ToValidUTF8(name[:maxQuoted], ""))
	}
	return fmt.Sprintf("%q", name)
}
