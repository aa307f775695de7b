package soak

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// Where a cluster's entry lives.
const (
	fromDir    = "kubeconfig-dir"
	fromSecret = "hub-secret"
)

// fleetNamespace holds the hub's cluster Secrets.
const fleetNamespace = "fleet"

// world is what the service runs against: the member clusters, the hub, and
// the two sources' stores (a kubeconfig directory, Secrets in the hub). The
// soak writes the stores; the service only reads them (and writes its
// replicas' Leases in the hub).
type world struct {
	env       *localcluster.Environment
	hub       *localcluster.Cluster
	members   []*localcluster.Cluster
	dir       string
	hubAdmin  kubernetes.Interface
	adminHTTP []*http.Client // of hubAdmin and the members' admin clients, closed at the end
	creds     *credentials

	mu      sync.Mutex // protects entries
	entries map[string]*entry
}

// entry is one cluster as the soak wrote it into a source.
type entry struct {
	name   string
	origin string
	target *localcluster.Cluster // the API server it points at
	token  string

	mu sync.Mutex // held by whoever rewrites the entry (a rotation, a corruption, a rewrite)
}

func newWorld(ctx context.Context, env *localcluster.Environment, members []*localcluster.Cluster, hub *localcluster.Cluster, creds *credentials) (*world, error) {
	w := &world{env: env, hub: hub, members: members, creds: creds, entries: map[string]*entry{}}
	w.dir = filepath.Join(env.Dir(), "soak-kubeconfigs")
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if w.hubAdmin, err = w.adminClient(hub); err != nil {
		return nil, err
	}
	// The cluster Secrets, and the replicas' Leases.
	for _, ns := range []string{fleetNamespace, leaseNamespace} {
		_, err = w.hubAdmin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	creds.add(hub.Token())
	// The probe: a selected Secret with no kubeconfig, listed as a cluster
	// with an error, whose label the soak changes to time how long a change
	// in the hub takes to reach the Registry.
	_, err = w.hubAdmin.CoreV1().Secrets(fleetNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: probeCluster, Namespace: fleetNamespace,
			Labels: map[string]string{"sigs.k8s.io/multicluster-runtime-kubeconfig": "true", probeLabel: "0"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	// The first half of the members live in the directory, the rest in Secrets.
	for i, m := range members {
		origin := fromDir
		if i >= (len(members)+1)/2 {
			origin = fromSecret
		}
		e := &entry{name: m.Name(), origin: origin, target: m, token: m.Token()}
		creds.add(e.token)
		if err := w.write(ctx, e, nil); err != nil {
			return nil, err
		}
		w.entries[e.name] = e
	}
	return w, nil
}

// memberNames returns the names of the member clusters, which stay in their
// sources for the whole soak.
func (w *world) memberNames() []string {
	names := make([]string, len(w.members))
	for i, m := range w.members {
		names[i] = m.Name()
	}
	return names
}

func (w *world) adminClient(c *localcluster.Cluster) (kubernetes.Interface, error) {
	cfg := c.AdminConfig()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	w.adminHTTP = append(w.adminHTTP, hc)
	return kubernetes.NewForConfigAndClient(cfg, hc)
}

func (w *world) closeIdle() {
	for _, hc := range w.adminHTTP {
		utilnet.CloseIdleConnectionsFor(hc.Transport)
	}
}

func (w *world) entry(name string) *entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.entries[name]
}

// renderKubeconfig renders e's kubeconfig, with token.
func renderKubeconfig(e *entry, token string) []byte {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[e.name] = &clientcmdapi.Cluster{Server: e.target.Server(), CertificateAuthorityData: e.target.CAData()}
	cfg.AuthInfos[e.name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[e.name] = &clientcmdapi.Context{Cluster: e.name, AuthInfo: e.name}
	cfg.CurrentContext = e.name
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		// A config built in memory always encodes; an empty file is then
		// the source's error to show, which the soak would report.
		return nil
	}
	return b
}

func (w *world) path(e *entry) string { return filepath.Join(w.dir, e.name+".yaml") }

// write stores e in its source: atomically (a complete file renamed into
// place, one Secret update), with data in place of e's kubeconfig if given.
// Writes to the hub retry while the hub's API server is down (the soak's
// own writes bypass the proxy, so only a killed hub holds them).
func (w *world) write(ctx context.Context, e *entry, data []byte) error {
	if data == nil {
		data = renderKubeconfig(e, e.token)
	}
	if e.origin == fromDir {
		tmp := filepath.Join(w.dir, "."+e.name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, w.path(e))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	secrets := w.hubAdmin.CoreV1().Secrets(fleetNamespace)
	for {
		err := func() error {
			sec, err := secrets.Get(ctx, e.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				_, err = secrets.Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: e.name, Namespace: fleetNamespace,
						Labels: map[string]string{"sigs.k8s.io/multicluster-runtime-kubeconfig": "true"}},
					Data: map[string][]byte{secret.DefaultKey: data},
				}, metav1.CreateOptions{})
				return err
			}
			if err != nil {
				return err
			}
			sec.Data = map[string][]byte{secret.DefaultKey: data}
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
			return err
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("write %s: %w", e.name, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// writeSlowly rewrites a directory entry in place, non-atomically: the file
// is truncated and written in chunks with pauses between them, each shorter
// than the Dir's settle time (the documented contract for in-place writers).
func (w *world) writeSlowly(e *entry, chunks int, pause time.Duration) error {
	data := renderKubeconfig(e, e.token)
	f, err := os.OpenFile(w.path(e), os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	step := (len(data) + chunks - 1) / chunks
	for off := 0; off < len(data); off += step {
		if off > 0 {
			time.Sleep(pause)
		}
		if _, err := f.Write(data[off:min(off+step, len(data))]); err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

const (
	probeCluster = "hub-probe"
	probeLabel   = "soak-probe"
)

// touchProbe sets the probe Secret's label to value.
func (w *world) touchProbe(ctx context.Context, value string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	secrets := w.hubAdmin.CoreV1().Secrets(fleetNamespace)
	for {
		sec, err := secrets.Get(ctx, probeCluster, metav1.GetOptions{})
		if err == nil {
			sec.Labels[probeLabel] = value
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("touch the probe: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// remove deletes e from its source. The world keeps knowing e, so that
// what happens to it afterwards is still classified by its origin and target.
func (w *world) remove(ctx context.Context, e *entry) error {
	if e.origin == fromDir {
		return os.Remove(w.path(e))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := w.hubAdmin.CoreV1().Secrets(fleetNamespace).Delete(ctx, e.name, metav1.DeleteOptions{})
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete %s: %w", e.name, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// add stores a new entry.
func (w *world) add(ctx context.Context, e *entry) error {
	w.mu.Lock()
	w.entries[e.name] = e
	w.mu.Unlock()
	return w.write(ctx, e, nil)
}

// credentials are the secrets the soak knows: every token it handed to a
// source and every marker it put in corrupted data. None may appear in a
// log line, an error or an event.
type credentials struct {
	mu   sync.Mutex // protects list
	list []string
}

func (c *credentials) add(cred string) {
	if cred == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, cred)
	// A JWT's signature alone is as secret as the token.
	if i := strings.LastIndexByte(cred, '.'); i >= 0 && len(cred)-i > 20 {
		c.list = append(c.list, cred[i+1:])
	}
}

// redact replaces every known credential in s.
func (c *credentials) redact(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cred := range c.list {
		s = strings.ReplaceAll(s, cred, "<REDACTED>")
	}
	return s
}

// find returns the first known credential in s, or "".
func (c *credentials) find(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cred := range c.list {
		if strings.Contains(s, cred) {
			return cred
		}
	}
	return ""
}
