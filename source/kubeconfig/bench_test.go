package kubeconfig_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry/source/kubeconfig"
)

// benchKubeconfig is a file of the size that a real one has: one context, a
// certificate authority inline, a token.
func benchKubeconfig(name, server string) string {
	ca := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 1200)))
	return fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: %[1]s
clusters: [{name: %[1]s, cluster: {server: %[2]q, certificate-authority-data: %[3]q}}]
contexts: [{name: %[1]s, context: {cluster: %[1]s, user: %[1]s}}]
users: [{name: %[1]s, user: {token: tok-s3cr3t}}]
`, name, server, ca)
}

// BenchmarkDirList lists a directory of n files of which none or one
// changed since the previous List, with each unchanged file's contexts
// resolved once and resolved on every List (the baseline, as before).
func BenchmarkDirList(b *testing.B) {
	const n = 1000
	for _, changed := range []int{0, 1} {
		for _, memo := range []bool{true, false} {
			b.Run(fmt.Sprintf("files=%d/changed=%d/memo=%t", n, changed, memo), func(b *testing.B) {
				dir := b.TempDir()
				// Modification times well in the past, and change times
				// (which cannot be set) aged below: a poll then trusts the
				// stat, and reads no unchanged file.
				old := time.Now().Add(-time.Hour)
				for i := range n {
					path := filepath.Join(dir, fmt.Sprintf("c%04d.yaml", i))
					writeFile(b, path, benchKubeconfig(fmt.Sprintf("c%04d", i), fmt.Sprintf("https://c%d.example:6443", i)))
					if err := os.Chtimes(path, old, old); err != nil {
						b.Fatal(err)
					}
				}
				opts := []kubeconfig.Option{kubeconfig.WithSettle(0),
					kubeconfig.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0)))}
				if !memo {
					opts = append(opts, kubeconfig.WithNoMemo())
				}
				d, err := kubeconfig.NewDir(dir, opts...)
				if err != nil {
					b.Fatal(err)
				}
				// The change times must be older than the racy window of
				// the first List's reads; only the wall clock ages them.
				time.Sleep(kubeconfig.RacyWindow)
				ctx := context.Background()
				if _, err := d.List(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				version := 0
				for b.Loop() {
					if changed > 0 {
						b.StopTimer()
						version++
						server := fmt.Sprintf("https://c0-%d.example:6443", version)
						writeFile(b, filepath.Join(dir, "c0000.yaml"), benchKubeconfig("c0000", server))
						b.StartTimer()
					}
					clusters, err := d.List(ctx)
					if err != nil || len(clusters) != n {
						b.Fatal(err, len(clusters))
					}
				}
			})
		}
	}
}
