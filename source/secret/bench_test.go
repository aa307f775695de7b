package secret_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/clusterregistry/clusterregistry/source/secret"
)

// benchCA is a certificate authority of a real one's size, base64.
var benchCA = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 1200)))

func benchSecret(format secret.Format, i, version int) *corev1.Secret {
	name := fmt.Sprintf("c%05d", i)
	server := fmt.Sprintf("https://%s-%d.example:6443", name, version)
	if format == secret.ArgoCD {
		return argoSecret("hub", name, map[string]string{"name": name, "server": server,
			"config": `{"bearerToken": "tok-s3cr3t", "tlsClientConfig": {"caData": "` + benchCA + `"}}`})
	}
	return kubeconfigSecret("hub", name, map[string]string{"kubeconfig": fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: main
clusters: [{name: main, cluster: {server: %q, certificate-authority-data: %q}}]
contexts: [{name: main, context: {cluster: main, user: main}}]
users: [{name: main, user: {token: tok-s3cr3t}}]
`, server, benchCA)})
}

// BenchmarkList lists n Secrets from a running Watch's cache, of which none
// or one changed since the previous List, with the memo of resolved configs
// and without it (the baseline, as before the memo).
func BenchmarkList(b *testing.B) {
	for _, format := range []secret.Format{secret.Kubeconfig, secret.ArgoCD} {
		for _, n := range []int{1000, 10_000} {
			objs := make([]runtime.Object, n)
			for i := range objs {
				objs[i] = benchSecret(format, i, 0)
			}
			for _, changed := range []int{0, 1} {
				for _, memo := range []bool{true, false} {
					name := fmt.Sprintf("format=%v/secrets=%d/changed=%d/memo=%t", format, n, changed, memo)
					b.Run(name, func(b *testing.B) { benchList(b, format, objs, changed > 0, memo) })
				}
			}
		}
	}
}

func benchList(b *testing.B, format secret.Format, objs []runtime.Object, change, memo bool) {
	ctx := context.Background()
	client := fake.NewClientset(objs...)
	s, err := secret.New(client, secret.WithFormat(format), secret.WithNamespace("hub"))
	if err != nil {
		b.Fatal(err)
	}
	if !memo {
		secret.MemoOf(s).Disable()
	}
	changes := make(chan struct{}, 1)
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(watchCtx, func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	waitChange := func() {
		select {
		case <-changes:
		case <-time.After(30 * time.Second):
			b.Fatal("no change reported")
		}
	}
	waitChange() // synced
	if _, err := s.List(ctx); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	version := 0
	for b.Loop() {
		if change {
			b.StopTimer()
			version++
			sec := benchSecret(format, 0, version)
			if _, err := client.CoreV1().Secrets("hub").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			waitChange()
			b.StartTimer()
		}
		clusters, err := s.List(ctx)
		if err != nil || len(clusters) != len(objs) {
			b.Fatal(err, len(clusters))
		}
		if change && clusters[0].Config.Host != fmt.Sprintf("https://c00000-%d.example:6443", version) {
			b.Fatalf("List before the change reached the cache: %s", clusters[0].Config.Host)
		}
	}
}
