// Package secret provides a cluster source that reads Secrets in a hub
// cluster, in one of three formats:
//
//   - Kubeconfig: a kubeconfig under one data key (default "kubeconfig"),
//     one cluster per Secret named after the Secret, as the kubeconfig
//     provider of multicluster-runtime keeps them. Its current-context is
//     used, or its only context.
//   - ArgoCD: Argo CD's cluster Secrets, with data keys name, server and
//     config (a JSON object with bearerToken, username and password,
//     tlsClientConfig and execProviderConfig), one cluster per Secret named
//     by its name key.
//
// A typical use, with a clientset for the hub cluster:
//
//	src, err := secret.New(hub,
//		secret.WithFormat(secret.ArgoCD),
//		secret.WithNamespace("argocd"))
//	if err != nil { ... }
//	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{})
//
// Every cluster carries its Secret's labels and, as Revision, its
// resourceVersion, so a cluster is rebuilt exactly when its Secret changes.
// A List resolves only the Secrets whose kubeconfig (or Argo CD server and
// config) the previous one did not list, found by a SHA-256 of those bytes
// (and those that failed or name local files), so a List of many unchanged
// Secrets, such as the one that follows each change the watch reports,
// decodes next to nothing.
//
// The Source is a clusterregistry.Watcher: Watch runs an informer on the
// selected Secrets, so that a created, changed or deleted Secret reaches the
// Syncer at once, and List then reads the informer's cache instead of the
// API server. Without a running Watch, List asks the API server.
//
// A Secret that cannot be used (no data, no kubeconfig, a malformed one, no
// server) is listed under its cluster's name with Err set to a
// *clusterregistry.FieldError whose Location is the Secret's
// namespace/name; the error never quotes a credential. Two Secrets that give
// the same cluster name are an error for that name only.
//
// Whoever can write the selected Secrets chooses what the service connects
// to, so select a namespace that only administrators can write. The Secrets
// are untrusted by default (trust.Untrusted): a kubeconfig
// or config that asks for an exec or auth-provider plugin (Argo CD's
// execProviderConfig included), or that refers to a file on the service's
// host, is listed with an error that names the setting and wraps
// trust.ErrRefused, and nothing it names is read or run.
// WithTrustPolicy allows more, such as exec plugins for EKS or GKE clusters
// when only administrators can write the Secrets.
//
// Limits: a Secret's kubeconfig (or, for Argo CD, its name, server and
// config together) may hold at most WithMaxSize bytes, else its cluster is
// listed with an error; List fails when more than WithMaxClusters Secrets are
// selected. A cluster name must pass clusterregistry.ValidateName, after
// WithRename if set; otherwise its cluster is listed with an error naming
// the Secret, and the Syncer ignores it.
package secret

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
	"github.com/clusterregistry/clusterregistry/source/internal/informers"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

// A Format says how a Secret describes a cluster.
type Format int

const (
	// Kubeconfig is a kubeconfig under one data key (see WithKey); the
	// cluster is named after the Secret.
	Kubeconfig Format = iota
	// ArgoCD is Argo CD's cluster Secret format.
	ArgoCD
	// ClusterAPI is the format of the kubeconfig Secrets that Cluster API
	// writes: a Secret <cluster>-kubeconfig of type ClusterAPISecretType,
	// labelled ClusterAPINameLabel, with the kubeconfig under the data key
	// "value" (see WithKey). Other Secrets that Cluster API labels the same
	// way (certificates, keys) are never selected. The cluster is named
	// ClusterAPIName(namespace, cluster) and carries the labels
	// LabelNamespace and ClusterAPINameLabel.
	ClusterAPI
)

// String returns the format's name.
func (f Format) String() string {
	switch f {
	case Kubeconfig:
		return "Kubeconfig"
	case ArgoCD:
		return "ArgoCD"
	case ClusterAPI:
		return "ClusterAPI"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Defaults of the options.
const (
	// DefaultKey is the data key of the Kubeconfig format.
	DefaultKey = "kubeconfig"
	// DefaultKubeconfigSelector selects the Secrets of the Kubeconfig format
	// by multicluster-runtime's label.
	DefaultKubeconfigSelector = "sigs.k8s.io/multicluster-runtime-kubeconfig=true"
	// DefaultArgoCDSelector selects Argo CD's cluster Secrets.
	DefaultArgoCDSelector = "argocd.argoproj.io/secret-type=cluster"
	// DefaultClusterAPIKey is the data key of the ClusterAPI format.
	DefaultClusterAPIKey = "value"
	// DefaultClusterAPISelector selects the Secrets that Cluster API labels
	// with their cluster's name; of those, only the kubeconfig Secrets are
	// listed.
	DefaultClusterAPISelector = ClusterAPINameLabel
	// DefaultClusterAPIVersion is the version of the Cluster API's Cluster
	// objects that WithSkipUninitialized reads.
	DefaultClusterAPIVersion = "v1beta2"
	// DefaultMaxSize bounds one Secret's cluster description: 1 MiB.
	DefaultMaxSize = kcfg.DefaultMaxSize
	// DefaultMaxClusters bounds the Secrets one List may select.
	DefaultMaxClusters = kcfg.DefaultMaxClusters
)

// Names of the ClusterAPI format.
const (
	// ClusterAPISecretType is the type of the Secrets Cluster API writes.
	ClusterAPISecretType corev1.SecretType = "cluster.x-k8s.io/secret"
	// ClusterAPINameLabel labels a Cluster API Secret with the name of its
	// cluster. Every cluster of the ClusterAPI format carries it.
	ClusterAPINameLabel = "cluster.x-k8s.io/cluster-name"
	// LabelNamespace labels every cluster of the ClusterAPI format with the
	// namespace of its Secret (and of its Cluster API Cluster).
	LabelNamespace = "clusterregistry.io/namespace"
)

// ClusterAPIName returns the name of the cluster called cluster in
// namespace: "<namespace>:<cluster>". Kubernetes namespace names never hold
// a colon, so the name tells both apart, and two namespaces' clusters of
// one name never clash. The result passes clusterregistry.ValidateName when
// cluster is a valid Cluster API cluster name and the whole is at most 253
// characters; WithRename maps it to a name of your own.
func ClusterAPIName(namespace, cluster string) string { return namespace + ":" + cluster }

// listChunk is how many Secrets one request to the API server asks for, so
// that a List past the limit stops early.
const listChunk = 500

// An Option configures a Source.
type Option interface {
	apply(*options)
}

type options struct {
	// nudge is how often Watch asks for a List while its informer fails.
	nudge       time.Duration
	namespace   string
	selector    *string
	format      Format
	key         *string
	defaultName string
	policy      trust.Policy
	rename      func(string) string
	maxSize     int64
	maxClusters int
	// clusters, when set, reads Cluster API's Clusters for
	// WithSkipUninitialized.
	clusters    dynamic.Interface
	capiVersion string
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithNamespace reads the Secrets of one namespace. Default: all namespaces.
func WithNamespace(ns string) Option {
	return optionFunc(func(o *options) { o.namespace = ns })
}

// WithLabelSelector selects the Secrets by a label selector, in the syntax of
// kubectl's --selector; an empty one selects every Secret of the namespace.
// Default: DefaultKubeconfigSelector, DefaultArgoCDSelector or
// DefaultClusterAPISelector, by format.
func WithLabelSelector(selector string) Option {
	return optionFunc(func(o *options) { o.selector = &selector })
}

// WithFormat sets the format of the Secrets. Default: Kubeconfig.
func WithFormat(f Format) Option {
	return optionFunc(func(o *options) { o.format = f })
}

// WithKey sets the data key that holds the kubeconfig in the Kubeconfig and
// ClusterAPI formats. Default: "kubeconfig" (DefaultKey), or "value"
// (DefaultClusterAPIKey) in the ClusterAPI format.
func WithKey(key string) Option {
	return optionFunc(func(o *options) { o.key = &key })
}

// WithSkipUninitialized, in the ClusterAPI format, leaves out the clusters
// whose control plane is not initialized yet: those whose Cluster API
// Cluster (cluster.x-k8s.io, of the Secret's namespace and the cluster's
// name) is missing or does not say so, by the condition
// ControlPlaneInitialized (True) or status.initialization.controlPlaneInitialized.
// Such a cluster's kubeconfig Secret exists before its API server answers,
// so its client would fail until then. client reads the Clusters, at
// version WithClusterAPIVersion; the source then needs the right to list and
// watch them. While Watch runs, it watches them too, and a cluster that
// becomes initialized reaches the Syncer at once. Default: off, every
// kubeconfig Secret is listed.
func WithSkipUninitialized(client dynamic.Interface) Option {
	return optionFunc(func(o *options) { o.clusters = client })
}

// WithClusterAPIVersion sets the version of the Cluster API Clusters that
// WithSkipUninitialized reads, such as "v1beta1" for Cluster API releases
// before v1.11. Both versions' ways of saying that a control plane is
// initialized are understood. Default: DefaultClusterAPIVersion.
func WithClusterAPIVersion(version string) Option {
	return optionFunc(func(o *options) { o.capiVersion = version })
}

// WithDefault marks the cluster called name as the default.
func WithDefault(name string) Option {
	return optionFunc(func(o *options) { o.defaultName = name })
}

// WithTrustPolicy sets which settings a Secret may use: exec and
// auth-provider plugins (in the Kubeconfig format) or execProviderConfig (in
// Argo CD's), references to files on the service's host, insecure TLS and
// proxies. A Secret that uses a refused setting is listed with an error that
// names the setting and wraps trust.ErrRefused; nothing it names is
// read or run. Default: trust.Untrusted, which refuses
// plugins and local files.
func WithTrustPolicy(p trust.Policy) Option {
	return optionFunc(func(o *options) { o.policy = p })
}

// WithRename sets a function that maps the name a Secret gives (its own
// name, Argo CD's name key, or ClusterAPIName of a Cluster API Secret) to
// the cluster's name, such as kubeconfig.SanitizeName for Argo CD names
// with spaces or slashes. The result must pass clusterregistry.ValidateName.
// WithDefault names the cluster by its new name. Default: none.
func WithRename(rename func(name string) string) Option {
	return optionFunc(func(o *options) { o.rename = rename })
}

// WithMaxSize bounds one Secret's description in bytes: the kubeconfig
// under the key, or Argo CD's name, server and config together. A bigger
// one is listed with an error and not decoded. Default: DefaultMaxSize.
func WithMaxSize(bytes int64) Option {
	return optionFunc(func(o *options) { o.maxSize = bytes })
}

// WithMaxClusters bounds the Secrets one List may select; past it List
// fails, and the Syncer keeps its last good state. Without a running Watch,
// List stops reading from the API server as soon as it is past the limit.
// Default: DefaultMaxClusters.
func WithMaxClusters(n int) Option {
	return optionFunc(func(o *options) { o.maxClusters = n })
}

// A Source lists the clusters of the selected Secrets. All methods are safe
// for concurrent use; several Watch calls may run at once.
type Source struct {
	client   kubernetes.Interface
	opts     options
	selector labels.Selector

	// memo keeps the configs of the latest List's Secrets, so that a List
	// resolves only the Secrets whose description changed.
	memo kcfg.Memo

	mu      sync.Mutex // protects watches
	watches map[*watchStores]struct{}
}

// watchStores are the caches of one running Watch.
type watchStores struct {
	secrets cache.Store
	// clusters holds Cluster API's Clusters, with WithSkipUninitialized.
	clusters cache.Store
	health   []*informers.Health
}

// fresh reports whether every informer's cache is in step with the API
// server.
func (w *watchStores) fresh() bool {
	for _, h := range w.health {
		if !h.Fresh() {
			return false
		}
	}
	return true
}

var _ clusterregistry.Watcher = (*Source)(nil)

// New returns a Source that reads Secrets through client. It validates the
// options and starts nothing.
func New(client kubernetes.Interface, opts ...Option) (*Source, error) {
	o := options{nudge: informers.NudgePeriod, policy: trust.Untrusted, maxSize: DefaultMaxSize, maxClusters: DefaultMaxClusters, capiVersion: DefaultClusterAPIVersion}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if client == nil {
		return nil, errors.New("secret: client must not be nil")
	}
	sel, key := DefaultKubeconfigSelector, DefaultKey
	switch o.format {
	case Kubeconfig:
	case ArgoCD:
		sel = DefaultArgoCDSelector
	case ClusterAPI:
		sel, key = DefaultClusterAPISelector, DefaultClusterAPIKey
	default:
		return nil, fmt.Errorf("secret: unknown format %v", o.format)
	}
	if o.selector != nil {
		sel = *o.selector
	}
	selector, err := labels.Parse(sel)
	if err != nil {
		return nil, fmt.Errorf("secret: label selector: %w", err)
	}
	if o.key != nil {
		key = *o.key
	}
	if key == "" {
		return nil, errors.New("secret: key must not be empty")
	}
	o.key = &key
	if o.clusters != nil && o.format != ClusterAPI {
		return nil, fmt.Errorf("secret: WithSkipUninitialized needs the ClusterAPI format, not %v", o.format)
	}
	if o.capiVersion == "" {
		return nil, errors.New("secret: Cluster API version must not be empty")
	}
	if err := kcfg.CheckLimits(o.maxSize, o.maxClusters); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return &Source{client: client, opts: o, selector: selector, watches: map[*watchStores]struct{}{}}, nil
}

// List returns one cluster per selected Secret, sorted by name. It reads the
// cache of a running Watch, or else lists the Secrets from the API server, in
// chunks; also while the Watch's informer is failing to list or watch (and
// until it has synced again), so that a listing is never stale without an
// error to say so. It fails when that List fails, and when more Secrets than
// WithMaxClusters are selected. With WithSkipUninitialized it also reads
// Cluster API's Clusters, and fails when that fails.
func (s *Source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var secrets []*corev1.Secret
	add := func(sec *corev1.Secret) error {
		// A fake or an old server may not filter by labels.
		if !s.selector.Matches(labels.Set(sec.Labels)) || !s.selects(sec) {
			return nil
		}
		if len(secrets) == s.opts.maxClusters {
			return fmt.Errorf("secret: %w", kcfg.TooMany(s.opts.maxClusters))
		}
		secrets = append(secrets, sec)
		return nil
	}
	if w := s.watch(); w != nil && w.fresh() {
		for _, obj := range w.secrets.List() {
			if sec, ok := obj.(*corev1.Secret); ok {
				if err := add(sec); err != nil {
					return nil, err
				}
			}
		}
		if w.clusters != nil {
			secrets = initializedOnly(secrets, initializedIn(w.clusters.List()))
		}
		return s.clusters(secrets), nil
	}
	opts := metav1.ListOptions{LabelSelector: s.selector.String(), FieldSelector: s.fieldSelector(), Limit: listChunk}
	for {
		list, err := s.client.CoreV1().Secrets(s.opts.namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		for i := range list.Items {
			if err := add(&list.Items[i]); err != nil {
				return nil, err
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	if s.opts.clusters != nil {
		ready, err := s.listInitialized(ctx)
		if err != nil {
			return nil, err
		}
		secrets = initializedOnly(secrets, ready)
	}
	return s.clusters(secrets), nil
}

// selects reports whether sec is a Secret of the Source's format, beyond
// its labels: in the ClusterAPI format, a kubeconfig Secret of the cluster
// it is labelled with (Cluster API labels its certificates and keys the same
// way).
func (s *Source) selects(sec *corev1.Secret) bool {
	if s.opts.format != ClusterAPI {
		return true
	}
	cluster := sec.Labels[ClusterAPINameLabel]
	return sec.Type == ClusterAPISecretType && cluster != "" && sec.Name == cluster+"-kubeconfig"
}

// fieldSelector narrows what the API server sends, where the format allows.
func (s *Source) fieldSelector() string {
	if s.opts.format == ClusterAPI {
		return "type=" + string(ClusterAPISecretType)
	}
	return ""
}

func (s *Source) watch() *watchStores {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watches {
		return w
	}
	return nil
}

// Watch runs an informer on the selected Secrets (and, with
// WithSkipUninitialized, one on Cluster API's Clusters) and calls changed
// whenever a Secret is created, changed or deleted (or a Cluster appears,
// goes, or becomes initialized). While it runs, List reads the informers'
// caches. It blocks until ctx is done, and returns once the informers have
// stopped and every goroutine they started has ended.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	secrets := s.client.CoreV1().Secrets(s.opts.namespace)
	selected := func(o metav1.ListOptions) metav1.ListOptions {
		o.LabelSelector, o.FieldSelector = s.selector.String(), s.fieldSelector()
		return o
	}
	set := informers.NewSet(changed, s.opts.nudge)
	store, health, err := set.Add(informers.Resource{
		Client: s.client,
		Object: &corev1.Secret{},
		List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return secrets.List(ctx, selected(o))
		},
		Watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return secrets.Watch(ctx, selected(o))
		},
		Transform: trim,
		Changed: func(oldObj, newObj any) bool {
			o, ok1 := oldObj.(*corev1.Secret)
			n, ok2 := newObj.(*corev1.Secret)
			// A relist delivers unchanged Secrets as updates.
			return !ok1 || !ok2 || o.ResourceVersion == "" || o.ResourceVersion != n.ResourceVersion
		},
	})
	if err != nil {
		return fmt.Errorf("secret informer: %w", err)
	}
	w := &watchStores{secrets: store, health: []*informers.Health{health}}
	if s.opts.clusters != nil {
		store, health, err := set.Add(s.clusterResource())
		if err != nil {
			return fmt.Errorf("cluster informer: %w", err)
		}
		w.clusters = store
		w.health = append(w.health, health)
	}
	// While an informer fails, List asks the API server.
	set.Run(ctx, func() func() {
		s.mu.Lock()
		s.watches[w] = struct{}{}
		s.mu.Unlock()
		return func() {
			s.mu.Lock()
			delete(s.watches, w)
			s.mu.Unlock()
		}
	})
	return nil
}

// trim drops what the Source never reads, to keep the cache small. It
// changes a copy, not obj: whoever delivered obj may still hold it (the fake
// clientset's tracker does, and reads it as trim would write it).
func trim(obj any) (any, error) {
	if sec, ok := obj.(*corev1.Secret); ok && sec.ManagedFields != nil {
		trimmed := *sec
		trimmed.ManagedFields = nil
		return &trimmed, nil
	}
	return obj, nil
}

// clusters turns the Secrets into clusters, sorted by name. Two Secrets
// that give one name become one cluster with an error, as dedup.Clusters
// says, that names the first Secret by namespace/name and the others.
func (s *Source) clusters(secrets []*corev1.Secret) []clusterregistry.Cluster {
	// Each location once: a sort that built them for every comparison
	// would cost more than the rest of a List that resolves nothing.
	type located struct {
		loc string
		sec *corev1.Secret
	}
	sorted := make([]located, len(secrets))
	for i, sec := range secrets {
		sorted[i] = located{location(sec), sec}
	}
	slices.SortFunc(sorted, func(a, b located) int { return strings.Compare(a.loc, b.loc) })
	pass := s.memo.Pass()
	defs := make([]dedup.Def, len(sorted))
	for i, l := range sorted {
		c, field := s.cluster(l.sec, pass)
		defs[i] = dedup.Def{Cluster: c, Location: l.loc, Field: field}
	}
	pass.Done()
	out := dedup.Clusters(defs)
	// WithDefault names a cluster, whichever Secrets define it: a clash of
	// that name is the default too, as in the other sources.
	for i := range out {
		out[i].Default = s.isDefault(out[i].Name)
	}
	return out
}

func (s *Source) isDefault(name string) bool {
	return s.opts.defaultName != "" && name == s.opts.defaultName
}

// cluster turns one Secret into a cluster, and returns the field that gives
// its name. It finds the Secret's config in pass, or resolves it and keeps it
// there; pass may be nil.
func (s *Source) cluster(sec *corev1.Secret, pass *kcfg.Pass) (clusterregistry.Cluster, string) {
	var c clusterregistry.Cluster
	nameField := "metadata.name"
	switch s.opts.format {
	case ArgoCD:
		c = argoCluster(sec, &s.opts, pass)
		if len(sec.Data["name"]) > 0 {
			nameField = "data[name]"
		}
		c.Labels = sec.Labels
	case ClusterAPI:
		c = kubeconfigCluster(sec, &s.opts, pass)
		c.Name = ClusterAPIName(sec.Namespace, sec.Labels[ClusterAPINameLabel])
		nameField = "metadata.labels[" + ClusterAPINameLabel + "]"
		c.Labels = maps.Clone(sec.Labels)
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[LabelNamespace] = sec.Namespace
	default:
		c = kubeconfigCluster(sec, &s.opts, pass)
		c.Labels = sec.Labels
	}
	if s.opts.rename != nil {
		c.Name = s.opts.rename(c.Name)
	}
	if err := clusterregistry.ValidateName(c.Name); err != nil {
		c.Config, c.Err = nil, fieldErr(sec, nameField, kcfg.NameErr(c.Name, err))
	}
	c.Default = s.isDefault(c.Name)
	c.Revision = sec.ResourceVersion
	return c, nameField
}

func location(sec *corev1.Secret) string { return sec.Namespace + "/" + sec.Name }

func fieldErr(sec *corev1.Secret, field string, err error) error {
	return &clusterregistry.FieldError{Location: location(sec), Field: field, Err: err}
}
