package dedup_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
)

// def is a definition of a usable cluster at loc, named by field.
func def(name, loc, field string, opts ...func(*clusterregistry.Cluster)) dedup.Def {
	c := clusterregistry.Cluster{
		Name:     name,
		Config:   &rest.Config{Host: "https://" + loc, BearerToken: "tok-s3cr3t"},
		Revision: "rev-" + loc,
	}
	for _, o := range opts {
		o(&c)
	}
	return dedup.Def{Cluster: c, Location: loc, Field: field}
}

func isDefault(c *clusterregistry.Cluster) { c.Default = true }

func labels(kv ...string) func(*clusterregistry.Cluster) {
	return func(c *clusterregistry.Cluster) {
		c.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			c.Labels[kv[i]] = kv[i+1]
		}
	}
}

func failed(err error) func(*clusterregistry.Cluster) {
	return func(c *clusterregistry.Cluster) { c.Config, c.Err = nil, err }
}

// got is what a test compares of a cluster. Host is the config's host, or
// "" without a config; Err is the error's location, field and message.
type got struct {
	Name     string
	Host     string
	Default  bool
	Labels   map[string]string
	Revision string
	Err      string
}

func summarize(t *testing.T, clusters []clusterregistry.Cluster) []got {
	t.Helper()
	out := []got{}
	for _, c := range clusters {
		g := got{Name: c.Name, Default: c.Default, Labels: c.Labels, Revision: c.Revision}
		if c.Config != nil {
			g.Host = c.Config.Host
		}
		if c.Err != nil {
			var fe *clusterregistry.FieldError
			require.True(t, errors.As(c.Err, &fe), "cluster %q: Err is %T, not a *FieldError", c.Name, c.Err)
			g.Err = fe.Location + "|" + fe.Field + "|" + fe.Err.Error()
			assert.NotContains(t, c.Err.Error(), "s3cr3t", "an error quotes a credential")
		}
		out = append(out, g)
	}
	return out
}

func TestClusters(t *testing.T) {
	longName := strings.Repeat("n", 100)
	tests := []struct {
		name string
		give []dedup.Def
		want []got
	}{
		{
			name: "nothing",
			give: nil,
			want: []got{},
		},
		{
			name: "distinct names are sorted and kept as they are",
			give: []dedup.Def{
				def("b", "one", "name", isDefault, labels("env", "prod")),
				def("a", "two", "name"),
				def("c", "three", "name", failed(&clusterregistry.FieldError{Location: "three", Field: "kubeconfig", Err: errors.New("broken")})),
			},
			want: []got{
				{Name: "a", Host: "https://two", Revision: "rev-two"},
				{Name: "b", Host: "https://one", Default: true, Labels: map[string]string{"env": "prod"}, Revision: "rev-one"},
				{Name: "c", Revision: "rev-three", Err: "three|kubeconfig|broken"},
			},
		},
		{
			name: "a name at two locations is one error at the first, naming the other",
			give: []dedup.Def{
				def("x", "ns/one", "metadata.name"),
				def("a", "ns/a", "metadata.name"),
				def("x", "ns/two", "metadata.name"),
			},
			want: []got{
				{Name: "a", Host: "https://ns/a", Revision: "rev-ns/a"},
				{Name: "x", Err: `ns/one|metadata.name|cluster "x" is also defined by ns/two`},
			},
		},
		{
			name: "every other location, in the order given",
			give: []dedup.Def{
				def("x", "row 9", "name"),
				def("x", "row 10", "name"),
				def("x", "row 2", "name"),
			},
			want: []got{{Name: "x", Err: `row 9|name|cluster "x" is also defined by row 10, row 2`}},
		},
		{
			name: "no definition's default flag is taken",
			give: []dedup.Def{def("x", "row 1", "name", isDefault), def("x", "row 2", "name", isDefault)},
			want: []got{{Name: "x", Err: `row 1|name|cluster "x" is also defined by row 2`}},
		},
		{
			name: "the first definition's labels stay, so that a filter by label keeps the error",
			give: []dedup.Def{
				def("x", "source 0", "name", labels("env", "prod")),
				def("x", "source 1", "name", labels("env", "dev")),
			},
			want: []got{{Name: "x", Labels: map[string]string{"env": "prod"}, Err: `source 0|name|cluster "x" is also defined by source 1`}},
		},
		{
			name: "definitions with errors of their own clash too",
			give: []dedup.Def{
				def("x", "a", "name", failed(&clusterregistry.FieldError{Location: "a", Field: "kubeconfig", Err: errors.New("broken")})),
				def("x", "b", "name"),
			},
			want: []got{{Name: "x", Err: `a|name|cluster "x" is also defined by b`}},
		},
		{
			name: "two fields of one location are named by field",
			give: []dedup.Def{
				def("my-cluster", "upload", "contexts[my cluster].name"),
				def("my-cluster", "upload", "contexts[my/cluster].name"),
			},
			want: []got{{Name: "my-cluster", Err: `upload|contexts[my cluster].name|cluster "my-cluster" is also defined by field contexts[my/cluster].name`}},
		},
		{
			name: "another location and field are both named",
			give: []dedup.Def{
				def("x", "/d/one", "contexts[x].name"),
				def("x", "/d/two", "contexts[y].name"),
				def("x", "/d/three", "contexts[x].name"),
			},
			want: []got{{Name: "x", Err: `/d/one|contexts[x].name|cluster "x" is also defined by /d/two, field contexts[y].name; /d/three`}},
		},
		{
			name: "one origin that gives a name twice is left to the Syncer",
			give: []dedup.Def{def("x", "source 0", "name"), def("x", "source 0", "name", isDefault)},
			want: []got{
				{Name: "x", Host: "https://source 0", Revision: "rev-source 0"},
				{Name: "x", Host: "https://source 0", Default: true, Revision: "rev-source 0"},
			},
		},
		{
			name: "an origin that gives a name twice is named once",
			give: []dedup.Def{def("x", "source 0", "name"), def("x", "source 2", "name"), def("x", "source 0", "name"), def("x", "source 2", "name")},
			want: []got{{Name: "x", Err: `source 0|name|cluster "x" is also defined by source 2`}},
		},
		{
			name: "a long name is cut in the message",
			give: []dedup.Def{def(longName, "a", "name"), def(longName, "b", "name")},
			want: []got{{Name: longName, Err: `a|name|cluster "` + longName[:64] + `"… is also defined by b`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, summarize(t, dedup.Clusters(tt.give)))
		})
	}
}

func TestClustersLeavesItsInputAlone(t *testing.T) {
	give := []dedup.Def{def("b", "one", "name"), def("a", "two", "name"), def("b", "three", "name", labels("k", "v"))}
	before := summarize(t, []clusterregistry.Cluster{give[0].Cluster, give[1].Cluster, give[2].Cluster})
	require.Len(t, dedup.Clusters(give), 2)
	assert.Equal(t, []string{"b", "a", "b"}, []string{give[0].Cluster.Name, give[1].Cluster.Name, give[2].Cluster.Name}, "defs not reordered")
	assert.Equal(t, before, summarize(t, []clusterregistry.Cluster{give[0].Cluster, give[1].Cluster, give[2].Cluster}))
}
