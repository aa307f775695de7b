package kcfg

import (
	"encoding/base64"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/clusterregistry/clusterregistry/trust"
)

// BenchmarkCluster measures one kubeconfig's way to a rest.Config, which a
// Secret or SQL source pays for every cluster it lists: ours (decode, check,
// resolve) against client-go's own loading of the same bytes, which checks
// nothing.
func BenchmarkCluster(b *testing.B) {
	ca := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 1200)))
	data := []byte(`apiVersion: v1
kind: Config
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example:6443", certificate-authority-data: "` + ca + `"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3t}}]
`)
	b.Run("impl=ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := Decode(data, Options{Location: "row 1", Field: "kubeconfig", Policy: trust.Untrusted, MaxSize: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			if c := One(f); c.Err != nil {
				b.Fatal(c.Err)
			}
		}
	})
	b.Run("impl=ours-memo-hit", func(b *testing.B) {
		// What a List pays for an unchanged kubeconfig: its hash and a copy
		// of the config.
		var m Memo
		opts := Options{Location: "row 1", Field: "kubeconfig", Policy: trust.Untrusted, MaxSize: 1 << 20}
		p := m.Pass()
		p.One(data, opts)
		p.Done()
		p = m.Pass()
		b.ReportAllocs()
		for b.Loop() {
			if c := p.One(data, opts); c.Err != nil {
				b.Fatal(c.Err)
			}
		}
		if hits, misses := m.Stats(); misses != 1 || hits == 0 {
			b.Fatalf("%d hits, %d misses", hits, misses)
		}
	})
	b.Run("impl=clientcmd", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
			if err != nil || cfg.Host == "" {
				b.Fatal(err)
			}
		}
	})
}
