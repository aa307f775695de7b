package kubeconfig_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

// renameCounter is a WithRename that counts how often each context is
// resolved: Defs renames a context each time it resolves it.
type renameCounter struct {
	mu     sync.Mutex // protects counts
	counts map[string]int
}

func (r *renameCounter) rename(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[name]++
	return name
}

func (r *renameCounter) get() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

func TestDirResolvesAnUnchangedFileOnce(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	writeFile(t, one, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}, ctxSpec{"b", "https://b.example"}))
	writeFile(t, two, kubeconfigYAML("", ctxSpec{"c", "https://c.example"}))
	r := &renameCounter{counts: map[string]int{}}
	d, _ := newDir(t, dir, kubeconfig.WithRename(r.rename), kubeconfig.WithSettle(0))
	for range 3 {
		require.Len(t, list(t, d), 3)
	}
	assert.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, r.get())

	writeFile(t, two, kubeconfigYAML("", ctxSpec{"c", "https://c2.example"}))
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a.example"},
		{Name: "b", Host: "https://b.example"},
		{Name: "c", Host: "https://c2.example"},
	}, summarize(t, list(t, d)), "the change is picked up")
	assert.Equal(t, map[string]int{"a": 1, "b": 1, "c": 2}, r.get(), "only the changed file is resolved")
}

func TestDirListedConfigCanBeChanged(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one"), kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	d, _ := newDir(t, dir)
	for range 2 {
		c := list(t, d)[0]
		require.Equal(t, "https://a.example", c.Config.Host)
		require.Equal(t, tokenOf("a"), c.Config.BearerToken)
		c.Config.Host = "https://changed.example"
		c.Config.BearerToken = "changed"
	}
	c := list(t, d)[0]
	assert.Equal(t, "https://a.example", c.Config.Host)
	assert.Equal(t, tokenOf("a"), c.Config.BearerToken)
}

// TestDirCertificateFileIsReadOnEveryList: a file that names a certificate
// file is resolved on every List, so a List sees the file's new content
// even while nothing polls it.
func TestDirCertificateFileIsReadOnEveryList(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, ca, "ca-one")
	writeFile(t, filepath.Join(dir, "config"), `
clusters:
- {name: c, cluster: {server: "https://c.example", certificate-authority: `+ca+`}}
contexts:
- {name: x, context: {cluster: c, user: u}}
users:
- {name: u, user: {token: tok-s3cr3t}}
`)
	d, _ := newDir(t, dir)
	assert.Equal(t, []byte("ca-one"), list(t, d)[0].Config.CAData)
	writeFile(t, ca, "ca-two")
	assert.Equal(t, []byte("ca-two"), list(t, d)[0].Config.CAData)
}

// TestDirConcurrentLists overlaps Lists, which resolve the same Files at
// once, with edits, under -race.
func TestDirConcurrentLists(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one")
	writeFile(t, one, kubeconfigYAML("", ctxSpec{"a", "https://a.example"}))
	writeFile(t, filepath.Join(dir, "two"), kubeconfigYAML("", ctxSpec{"b", "https://b.example"}))
	d, _ := newDir(t, dir, kubeconfig.WithSettle(0))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				clusters, err := d.List(context.Background())
				if assert.NoError(t, err) && assert.Len(t, clusters, 2) {
					clusters[1].Config.Host = "changed"
				}
			}
		})
	}
	wg.Go(func() {
		for _, host := range []string{"https://a1.example", "https://a2.example"} {
			writeAtomically(t, one, kubeconfigYAML("", ctxSpec{"a", host}))
		}
	})
	wg.Wait()
	assert.Equal(t, []got{
		{Name: "a", Host: "https://a2.example"},
		{Name: "b", Host: "https://b.example"},
	}, summarize(t, list(t, d)))
}
