package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// leakedCredential is put into the Secrets with bad data: no error may
// quote it.
const leakedCredential = "do-not-print-me-0123456789abcdef"

// secretFormat writes the Secrets of one of the Secret source's formats.
type secretFormat struct {
	name   string
	format secret.Format
	// label is the label the source selects on by default.
	label [2]string
	// secretName is the name of the Secret that describes cluster.
	secretName func(cluster string) string
	// data describes cluster, reached at member with token.
	data func(cluster string, member *localcluster.Cluster, token string) map[string][]byte
	// badData describes cluster in a form the source cannot use, with
	// leakedCredential in it; badField is the field its error names.
	badData  func(cluster string) map[string][]byte
	badField string
}

var secretFormats = []secretFormat{
	{
		name:       "Kubeconfig",
		format:     secret.Kubeconfig,
		label:      [2]string{"sigs.k8s.io/multicluster-runtime-kubeconfig", "true"},
		secretName: func(cluster string) string { return cluster },
		data: func(_ string, m *localcluster.Cluster, token string) map[string][]byte {
			cfg := clientcmdapi.NewConfig()
			cfg.Clusters["member"] = &clientcmdapi.Cluster{Server: m.Server(), CertificateAuthorityData: m.CAData()}
			cfg.AuthInfos["member"] = &clientcmdapi.AuthInfo{Token: token}
			cfg.Contexts["member"] = &clientcmdapi.Context{Cluster: "member", AuthInfo: "member"}
			cfg.CurrentContext = "member"
			b, err := clientcmd.Write(*cfg)
			if err != nil {
				panic(err) // a kubeconfig built in memory always encodes
			}
			return map[string][]byte{secret.DefaultKey: b}
		},
		badData: func(string) map[string][]byte {
			// An unclosed flow sequence: not YAML.
			return map[string][]byte{secret.DefaultKey: []byte(
				"apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: " + leakedCredential + "}}\n")}
		},
		badField: "data[" + secret.DefaultKey + "]",
	},
	{
		name:       "ArgoCD",
		format:     secret.ArgoCD,
		label:      [2]string{"argocd.argoproj.io/secret-type", "cluster"},
		secretName: func(cluster string) string { return "argocd-" + cluster },
		data: func(cluster string, m *localcluster.Cluster, token string) map[string][]byte {
			// As Argo CD writes it: caData is base64 inside the JSON.
			config, err := json.Marshal(map[string]any{
				"bearerToken":     token,
				"tlsClientConfig": map[string]any{"caData": m.CAData()},
			})
			if err != nil {
				panic(err)
			}
			return map[string][]byte{"name": []byte(cluster), "server": []byte(m.Server()), "config": config}
		},
		badData: func(cluster string) map[string][]byte {
			return map[string][]byte{
				"name":   []byte(cluster),
				"server": []byte("https://127.0.0.1:1"),
				"config": []byte(`{"bearerToken": "` + leakedCredential + `", "tlsClientConfig": {`), // cut short
			}
		},
		badField: "data[config]",
	},
}

// countingWatcher counts the Watch calls of the source it wraps that are
// running, and the changes they report.
type countingWatcher struct {
	clusterregistry.Watcher
	running atomic.Int32
	changes atomic.Int64
}

func (w *countingWatcher) Watch(ctx context.Context, changed func()) error {
	w.running.Add(1)
	defer w.running.Add(-1)
	return w.Watcher.Watch(ctx, func() {
		w.changes.Add(1)
		changed()
	})
}

// secretWatches returns how many watches of one namespace's Secrets the API
// server behind admin is serving. (The API server's own informers watch
// Secrets of all namespaces.)
func secretWatches(ctx context.Context, admin kubernetes.Interface) (int, error) {
	return localcluster.Watches(ctx, admin, "namespace", "secrets")
}

// The Secret source against a real hub cluster: a Syncer whose interval is
// an hour watches Secrets in cluster-1, which describe cluster-2 and
// cluster-3, in each of the source's formats. The member clusters appear and
// answer; a changed, broken, relabelled or deleted Secret reaches the
// Registry through the watch within seconds; Secrets outside the namespace
// or without the label are never listed; stopping the Syncer ends the watch
// on the hub and leaves no goroutine behind.
func TestSecretSourceOnRealHub(t *testing.T) {
	env := localcluster.StartT(t, 3)
	hub := env.Cluster("cluster-1")
	members := []*localcluster.Cluster{env.Cluster("cluster-2"), env.Cluster("cluster-3")}
	hubAdmin := adminClient(t, hub)

	// A namespace only one member has, so that a list through the Registry
	// shows which cluster answered.
	for _, m := range members {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-on-" + m.Name()}}
		_, err := adminClient(t, m).CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	for _, f := range secretFormats {
		t.Run(f.name, func(t *testing.T) {
			secretSourceOnRealHub(t, f, hub, hubAdmin, members)
		})
	}
}

func secretSourceOnRealHub(t *testing.T, f secretFormat, hub *localcluster.Cluster, hubAdmin kubernetes.Interface, members []*localcluster.Cluster) {
	fleetNS, otherNS := "fleet-"+strings.ToLower(f.name), "other-"+strings.ToLower(f.name)
	secrets := func(ns string) corev1client.SecretInterface { return hubAdmin.CoreV1().Secrets(ns) }
	for _, ns := range []string{fleetNS, otherNS} {
		_, err := hubAdmin.CoreV1().Namespaces().Create(t.Context(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	newSecret := func(ns, cluster string, labelled bool, data map[string][]byte) *corev1.Secret {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.secretName(cluster)},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}
		if labelled {
			sec.Labels = map[string]string{f.label[0]: f.label[1], "team": "e2e"}
		}
		return sec
	}
	create := func(sec *corev1.Secret) {
		t.Helper()
		_, err := secrets(sec.Namespace).Create(t.Context(), sec, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	// update changes the Secret of cluster in the fleet namespace.
	update := func(cluster string, change func(*corev1.Secret)) {
		t.Helper()
		sec, err := secrets(fleetNS).Get(t.Context(), f.secretName(cluster), metav1.GetOptions{})
		require.NoError(t, err)
		change(sec)
		_, err = secrets(fleetNS).Update(t.Context(), sec, metav1.UpdateOptions{})
		require.NoError(t, err)
	}

	// The members' Secrets, and two that must be ignored: the right label in
	// another namespace, and the right namespace without the label. Both
	// describe a working cluster, so only the selection keeps them out.
	c2, c3 := members[0], members[1]
	create(newSecret(fleetNS, c2.Name(), true, f.data(c2.Name(), c2, c2.Token())))
	create(newSecret(fleetNS, c3.Name(), true, f.data(c3.Name(), c3, c3.Token())))
	create(newSecret(otherNS, "elsewhere", true, f.data("elsewhere", c2, c2.Token())))
	create(newSecret(fleetNS, "unlabelled", false, f.data("unlabelled", c2, c2.Token())))

	// Everything that runs from here on must be gone once the Syncer stops.
	ignoreBefore := goleak.IgnoreCurrent()
	hubWatches := func() int {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		n, err := secretWatches(ctx, hubAdmin)
		if err != nil {
			t.Logf("reading the hub's metrics: %v", err)
			return -1
		}
		return n
	}
	require.Zero(t, hubWatches(), "no watch of Secrets on the hub before the Syncer runs")

	// The service reaches the hub with a credential of its own, through the
	// hub's proxy, on an HTTP client that the test closes at the end.
	hubConfig := hub.Config()
	hubHTTP, err := rest.HTTPClientFor(hubConfig)
	require.NoError(t, err)
	hubClient, err := kubernetes.NewForConfigAndClient(hubConfig, hubHTTP)
	require.NoError(t, err)
	src, err := secret.New(hubClient, secret.WithNamespace(fleetNS), secret.WithFormat(f.format))
	require.NoError(t, err)
	watcher := &countingWatcher{Watcher: src}
	builder := &recordingBuilder{ClientBuilder: fast}
	s, err := clusterregistry.NewSyncer(watcher, builder,
		clusterregistry.WithInterval(time.Hour), // only the watch can explain a prompt change
		clusterregistry.WithLogger(testr.New(t)))
	require.NoError(t, err)
	reg := s.Registry()

	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-runErr:
			return err
		case <-time.After(time.Minute):
			return errors.New("Run did not return within a minute of its context's end")
		}
	}
	defer func() { _ = stop() }() // a failed test must not leave Run logging

	// The members appear and answer, each as itself.
	require.NoError(t, s.WaitForFirstSync(syncCtx(t)))
	both := []string{c2.Name(), c3.Name()}
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), both) }, 30*time.Second, 10*time.Millisecond,
		"clusters of the Registry: %v", reg.Snapshot().Names())
	require.Eventually(t, func() bool { return watcher.running.Load() == 1 && watcher.changes.Load() >= 1 },
		30*time.Second, 10*time.Millisecond, "the source's watch is running and has synced")
	require.Eventually(t, func() bool { return hubWatches() == 1 }, 30*time.Second, 50*time.Millisecond,
		"the hub serves one watch of Secrets")
	for _, m := range members {
		require.NoError(t, reg.Snapshot().Err(m.Name()), m.Name())
		client, err := reg.Get(m.Name())
		require.NoError(t, err, m.Name())
		assert.Equal(t, "v1.37.2", client.ServerVersion().GitVersion, m.Name())
		assert.Equal(t, m.Server(), client.Config().Host, m.Name())
		assert.Equal(t, []string{"only-on-" + m.Name()}, namespacesOf(t, client), m.Name())
		info, ok := reg.Snapshot().Cluster(m.Name())
		require.True(t, ok)
		assert.Equal(t, "e2e", info.Labels["team"], "the cluster carries its Secret's labels")
		assert.NotEmpty(t, info.Revision, "the cluster carries its Secret's resourceVersion")
	}

	// A rotated token: a new token is issued, the Secret updated. The watch
	// brings the new client in; the old one is released; the other cluster
	// keeps its client.
	old2, err := reg.Get(c2.Name())
	require.NoError(t, err)
	old3, err := reg.Get(c3.Name())
	require.NoError(t, err)
	oldToken := old2.Config().BearerToken
	newToken, err := c2.IssueToken(t.Context())
	require.NoError(t, err)
	changesBefore := watcher.changes.Load()
	start := time.Now()
	update(c2.Name(), func(sec *corev1.Secret) { sec.Data = f.data(c2.Name(), c2, newToken) })
	require.Eventually(t, func() bool {
		c, err := reg.Get(c2.Name())
		return err == nil && c.Config().BearerToken == newToken
	}, 10*time.Second, 5*time.Millisecond, "the new token reaches the Registry through the watch")
	t.Logf("a changed Secret reached the Registry in %s", time.Since(start).Round(time.Millisecond))
	assert.Greater(t, watcher.changes.Load(), changesBefore, "the watch reported the change")
	require.Eventually(t, func() bool { return builder.releases(old2) == 1 }, 10*time.Second, 5*time.Millisecond,
		"the old client is released")
	new2, err := reg.Get(c2.Name())
	require.NoError(t, err)
	assert.Equal(t, []string{"only-on-" + c2.Name()}, namespacesOf(t, new2))
	now3, err := reg.Get(c3.Name())
	require.NoError(t, err)
	assert.Same(t, old3, now3, "an unchanged Secret's cluster is not rebuilt")
	// The rotation ends with the old token revoked (which waits until the
	// API server rejects it); the Registry's client does not need it.
	require.NoError(t, c2.UseToken(newToken))
	require.NoError(t, c2.RevokeToken(t.Context(), oldToken))
	assert.Equal(t, []string{"only-on-" + c2.Name()}, namespacesOf(t, new2))

	// Bad data: a new Secret that cannot be used is an error for its cluster
	// only, naming the Secret and the field and quoting no credential.
	create(newSecret(fleetNS, "broken", true, f.badData("broken")))
	require.Eventually(t, func() bool { return hasClusterErr(reg, "broken") }, 10*time.Second, 5*time.Millisecond,
		"the broken Secret's error reaches the Registry")
	checkSecretErr(t, reg.Snapshot().Err("broken"), "broken", fleetNS+"/"+f.secretName("broken"), f.badField)
	_, err = reg.Get("broken")
	assert.Error(t, err, "a cluster with no usable Secret has no client")
	assert.Equal(t, []string{"broken", c2.Name(), c3.Name()}, reg.Snapshot().Names())
	for _, c := range []struct {
		name   string
		client *clusterregistry.Client
	}{{c2.Name(), new2}, {c3.Name(), old3}} {
		assert.NoError(t, reg.Snapshot().Err(c.name))
		got, err := reg.Get(c.name)
		require.NoError(t, err)
		assert.Same(t, c.client, got, "%s keeps its client", c.name)
	}

	// A working cluster whose Secret goes bad keeps its last good client,
	// with the error beside it, until the Secret is mended.
	good3 := f.data(c3.Name(), c3, c3.Token())
	update(c3.Name(), func(sec *corev1.Secret) { sec.Data = f.badData(c3.Name()) })
	require.Eventually(t, func() bool { return hasClusterErr(reg, c3.Name()) }, 10*time.Second, 5*time.Millisecond)
	checkSecretErr(t, reg.Snapshot().Err(c3.Name()), c3.Name(), fleetNS+"/"+f.secretName(c3.Name()), f.badField)
	served, err := reg.Get(c3.Name())
	require.NoError(t, err, "the last good client stays in service")
	assert.Same(t, old3, served)
	assert.Equal(t, []string{"only-on-" + c3.Name()}, namespacesOf(t, served))
	assert.Zero(t, builder.releases(old3))
	update(c3.Name(), func(sec *corev1.Secret) { sec.Data = good3 })
	require.Eventually(t, func() bool {
		c, err := reg.Get(c3.Name())
		return err == nil && c != old3 && reg.Snapshot().Err(c3.Name()) == nil
	}, 10*time.Second, 5*time.Millisecond, "the mended Secret gives a new client and clears the error")
	require.Eventually(t, func() bool { return builder.releases(old3) == 1 }, 10*time.Second, 5*time.Millisecond)
	new3, err := reg.Get(c3.Name())
	require.NoError(t, err)
	assert.Equal(t, []string{"only-on-" + c3.Name()}, namespacesOf(t, new3))

	// Secrets outside the selection stay out while the watch runs: a
	// labelled one in another namespace, an unlabelled one in the fleet's.
	// Then a Secret that loses its label leaves; it is written after the
	// others, so once it has left, the watch has seen everything before it.
	create(newSecret(otherNS, "elsewhere-too", true, f.data("elsewhere-too", c3, c3.Token())))
	create(newSecret(fleetNS, "unlabelled-too", false, f.data("unlabelled-too", c3, c3.Token())))
	update("broken", func(sec *corev1.Secret) { delete(sec.Labels, f.label[0]) })
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), both) }, 10*time.Second, 5*time.Millisecond,
		"clusters of the Registry: %v", reg.Snapshot().Names())

	// A deleted Secret removes its cluster and releases its client.
	require.NoError(t, secrets(fleetNS).Delete(t.Context(), f.secretName(c3.Name()), metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return slices.Equal(reg.Snapshot().Names(), []string{c2.Name()}) }, 10*time.Second, 5*time.Millisecond,
		"clusters of the Registry: %v", reg.Snapshot().Names())
	_, err = reg.Get(c3.Name())
	assert.ErrorIs(t, err, clusterregistry.ErrClusterNotFound)
	require.Eventually(t, func() bool { return builder.releases(new3) == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{"only-on-" + c2.Name()}, namespacesOf(t, new2), "the other cluster carries on")

	// Stopping the Syncer stops the watch: Run returns once Watch has
	// returned, the hub no longer serves the watch, every client is
	// released, and no goroutine of the Syncer or the informer remains.
	require.NoError(t, stop())
	assert.Zero(t, watcher.running.Load(), "Watch has returned")
	assert.Empty(t, reg.Snapshot().Names(), "after Run returns the Registry is empty")
	assert.Equal(t, 1, builder.releases(new2), "the last client is released once")
	require.Eventually(t, func() bool { return hubWatches() == 0 }, 30*time.Second, 50*time.Millisecond,
		"the hub stops serving the watch")
	utilnet.CloseIdleConnectionsFor(hubHTTP.Transport)
	goleak.VerifyNone(t, append(leakOptions(), ignoreBefore,
		// Idle connections of transports the harness and client-go keep
		// for reuse (the admin clients, token probes), not the Syncer's.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
	)...)
}

// hasClusterErr reports whether the Registry knows the cluster called name
// and holds an error for it. (Err of an unknown name is not-found.)
func hasClusterErr(reg *clusterregistry.Registry[*clusterregistry.Client], name string) bool {
	info, ok := reg.Snapshot().Cluster(name)
	return ok && info.Err != nil
}

// checkSecretErr checks that err is cluster's error for a Secret at
// location whose field is unusable, and quotes no credential.
func checkSecretErr(t *testing.T, err error, cluster, location, field string) {
	t.Helper()
	var cerr *clusterregistry.ClusterError
	require.ErrorAs(t, err, &cerr)
	assert.Equal(t, cluster, cerr.Name)
	assert.Zero(t, cerr.Attempts, "an unusable description is not built")
	var ferr *clusterregistry.FieldError
	require.ErrorAs(t, err, &ferr)
	assert.Equal(t, location, ferr.Location)
	assert.Equal(t, field, ferr.Field)
	assert.NotContains(t, err.Error(), leakedCredential)
}

// namespacesOf lists the namespaces of client's cluster that the test made
// (named only-on-...).
func namespacesOf(t *testing.T, client *clusterregistry.Client) []string {
	t.Helper()
	list, err := client.Kubernetes().CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err, client.Name())
	var out []string
	for _, ns := range list.Items {
		if strings.HasPrefix(ns.Name, "only-on-") {
			out = append(out, ns.Name)
		}
	}
	return out
}
