package main

// Downstream-style tests of the pod watcher, with clusterregistrytest: fake
// clusters, a Syncer for the length of the test, and a leak check that
// covers the informers the workers start.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clusterregistry/clusterregistry/clusterregistrytest"
	"github.com/clusterregistry/clusterregistry/fleet"
)

type fake = *clusterregistrytest.FakeClient

// logSink collects log lines for assertions.
type logSink struct {
	mu    sync.Mutex // protects lines
	lines []string
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, string(p))
	return len(p), nil
}

func (s *logSink) has(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestPodWatcherOnFakeClusters(t *testing.T) {
	builder := clusterregistrytest.NewFakeBuilder()
	builder.Seed("a", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"}})
	source := clusterregistrytest.NewSource(clusterregistrytest.NewCluster("a"))
	syncer := clusterregistrytest.StartSyncer(t, source, builder)
	var sink logSink
	pods, err := fleet.New(syncer.Registry(), watchPods[fake](newLogger(&sink)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pods.Start(ctx) }() // joined below
	require.Eventually(t, func() bool { return sink.has(`"cluster"="a" "pods"=1`) }, 10*time.Second, time.Millisecond)

	client := builder.Client("a").Kubernetes()
	_, err = client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-2"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sink.has(`"msg"="Pod added" "cluster"="a" "pod"="shop/web-2"`) }, 10*time.Second, time.Millisecond)
	assert.False(t, sink.has(`"pod"="shop/web-1"`), "pods of the initial list are not reported as added")

	cancel()
	require.NoError(t, <-done) // the informers shut down; TestMain checks that no goroutine is left
}
