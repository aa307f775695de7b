package clusterregistry_test

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		give string
		ok   bool
	}{
		{"prod", true},
		{"kind-kind", true},
		{"admin@prod.example.com", true},
		{"gke_project_zone_name", true},
		{"arn:aws:eks:us-east-1:123456789012:cluster", true},
		{"a", true},
		{strings.Repeat("a", 253), true},
		{"", false},
		{strings.Repeat("a", 254), false},
		{"arn:aws:eks:us-east-1:123:cluster/prod", false},
		{"has space", false},
		{"new\nline", false},
		{"-leading", false},
		{"trailing.", false},
		{"percent%2F", false},
		{"query?x", false},
		{"ünïcode", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			err := clusterregistry.ValidateName(tt.give)
			assert.Equal(t, tt.ok, err == nil, "%v", err)
		})
	}
}

func TestSyncerIgnoresInvalidNames(t *testing.T) {
	f := newFixture(t)
	f.src.Set(cluster("ok", "https://ok"), cluster("bad/name", "https://x"), cluster("bad\x1b[31mname", "https://x"))
	rep := f.sync(t)
	assert.Equal(t, []string{"ok"}, rep.Added)
	require.Len(t, rep.Invalid, 2)
	for _, err := range rep.Invalid {
		assert.NotContains(t, err.Error(), "\x1b", "names are quoted, so a log line stays one line")
	}
	assert.Equal(t, []string{"ok"}, f.reg.Snapshot().Names())
}

func TestMaxClustersKeepsTheLastGoodState(t *testing.T) {
	f := newFixture(t, clusterregistry.WithMaxClusters(2))
	f.src.Set(cluster("a", "https://a"), cluster("b", "https://b"))
	f.sync(t)
	f.src.Upsert(cluster("c", "https://c"))
	_, err := f.syncer.Sync(context.Background())
	require.ErrorContains(t, err, "listed 3 clusters, more than the limit of 2")
	assert.Equal(t, []string{"a", "b"}, f.reg.Snapshot().Names())
	assert.Zero(t, f.builder.releasedCount())
}

// FuzzValidateName checks that every name ValidateName accepts is safe where
// names go: a URL path segment, a header value, a metric label, a log line.
func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"prod", "", "a/b", "x\n", "admin@prod:6443", strings.Repeat("z", 300), "é"} {
		f.Add(seed)
	}
	pattern := regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._:@-]*[A-Za-z0-9])?$`)
	f.Fuzz(func(t *testing.T, name string) {
		ok := clusterregistry.ValidateName(name) == nil
		if want := len(name) <= clusterregistry.MaxNameLength && pattern.MatchString(name); ok != want {
			t.Fatalf("ValidateName(%q) accepts: %v, the documented pattern: %v", name, ok, want)
		}
		if !ok {
			return
		}
		if url.PathEscape(name) != name {
			t.Fatalf("%q needs escaping in a URL path", name)
		}
		for _, r := range name {
			if r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune(`"'\/%?#`, r) {
				t.Fatalf("%q holds %q", name, r)
			}
		}
		if len(name) == 0 || len(name) > clusterregistry.MaxNameLength {
			t.Fatalf("%q has length %d", name, len(name))
		}
	})
}
