// Package clusterprofile provides a cluster source that reads the
// ClusterProfiles of SIG-Multicluster's Cluster Inventory API
// (multicluster.x-k8s.io/v1alpha1) in a hub cluster, as Open Cluster
// Management, GKE Fleet and others publish them, one cluster per profile.
//
// A typical use, with a dynamic client for the hub cluster and the
// operator's provider file:
//
//	providers, err := clusterprofile.ReadProviders("/etc/clusterregistry/providers.json")
//	if err != nil { ... }
//	src, err := clusterprofile.New(hub, providers, clusterprofile.WithNamespace("fleet"))
//	if err != nil { ... }
//	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{})
//
// # Credentials
//
// A ClusterProfile says how to reach its cluster (status.accessProviders,
// or the older status.credentialProviders when there are none): for each
// access provider, a name and a kubeconfig cluster entry (server,
// certificate-authority-data, proxy-url, tls-server-name, extensions). It
// carries no credential. Credentials come from the operator's providers
// alone (ReadProviders, ParseProviders): each maps an access provider's name
// to an exec plugin. The source picks the first of the operator's providers
// that the profile offers and reaches the cluster with that plugin, run with
// interactiveMode Never; the cluster entry's extension
// client.authentication.k8s.io/exec becomes the plugin's Config (given to it
// with provideClusterInfo). A profile that offers none of the operator's
// providers is listed with an error that names status.accessProviders and
// wraps ErrNoProvider.
//
// Whoever can write ClusterProfiles can choose among the operator's
// providers and the servers they are used for, never the command that runs.
// The extensions that add arguments (ArgsExtension) or environment
// variables (EnvExtension) to the plugin are ignored unless
// WithExecExtensions allows them. The cluster entry's other settings go
// through the trust policy (WithTrustPolicy, trust.Untrusted by default):
// insecure-skip-tls-verify and proxy-url are accepted unless the policy
// refuses them, a certificate-authority file only if it allows local files.
// The policy's AllowExec and AllowAuthProvider are not consulted: the
// profile names no plugin.
//
// # Names and labels
//
// A profile in namespace ns called name is the cluster "ns:name"
// (ClusterName): namespace names hold no colon, so two namespaces'
// profiles of one name never clash. WithRename maps it to a name of your
// own. Each cluster carries, as labels: the profile's status.properties
// whose names and values are valid labels, the profile's own labels, and
// LabelNamespace, LabelName, LabelClusterManager (spec.clusterManager.name),
// LabelClusterSet (the label of the profile's namespace, when the source may
// read namespaces), LabelDisplayName, LabelKubernetesVersion
// (status.version.kubernetes) and LabelControlPlaneHealthy, where they are
// valid label values.
//
// # Health
//
// The condition ControlPlaneHealthy is the label LabelControlPlaneHealthy:
// "True", "False" or "Unknown" (also for a profile without it). An
// unhealthy cluster keeps its client, so that a passing failure costs no
// rebuild; select on the label to leave it out (compose.Filter), or turn on
// the Syncer's health check to see what the client sees.
//
// # Changes
//
// The source is a clusterregistry.Watcher: Watch runs an informer on the
// ClusterProfiles, so a created, changed or deleted profile reaches the
// Syncer at once, and List reads the informer's cache while it runs. Each
// cluster's Revision is a digest of the provider's name and its cluster
// entry, so a profile's status updates (conditions, properties) change
// labels and rebuild no client, and a changed server, CA or extension
// does. Errors name the profile (namespace/name) and the field, and quote
// no credential: no proxy password, no environment value.
package clusterprofile

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
	"github.com/clusterregistry/clusterregistry/source/internal/informers"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

// GroupVersionResource is what the source lists and watches, for callers'
// fakes and RBAC rules; the source keeps its own copy.
var GroupVersionResource = profilesGVR

var profilesGVR = schema.GroupVersionResource{
	Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "clusterprofiles",
}

var namespaces = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// ConditionControlPlaneHealthy is the condition of a ClusterProfile that
// says whether its control plane is healthy.
const ConditionControlPlaneHealthy = "ControlPlaneHealthy"

// Labels of the clusters.
const (
	// LabelNamespace is the profile's namespace.
	LabelNamespace = "clusterregistry.io/namespace"
	// LabelName is the profile's name.
	LabelName = "clusterregistry.io/name"
	// LabelClusterManager is the profile's spec.clusterManager.name, under
	// the label the Cluster Inventory API gives profiles for it.
	LabelClusterManager = "x-k8s.io/cluster-manager"
	// LabelClusterSet is the clusterset of the profile's namespace: that
	// namespace's label of the same name.
	LabelClusterSet = "multicluster.x-k8s.io/clusterset"
	// LabelDisplayName is the profile's spec.displayName.
	LabelDisplayName = "clusterregistry.io/display-name"
	// LabelKubernetesVersion is the profile's status.version.kubernetes.
	LabelKubernetesVersion = "clusterregistry.io/kubernetes-version"
	// LabelControlPlaneHealthy is the status of the profile's condition
	// ControlPlaneHealthy: "True", "False" or "Unknown".
	LabelControlPlaneHealthy = "clusterregistry.io/control-plane-healthy"
)

// DefaultMaxClusters bounds the ClusterProfiles one List may select.
const DefaultMaxClusters = kcfg.DefaultMaxClusters

// listChunk is how many profiles one request to the API server asks for.
const listChunk = 500

// ClusterName returns the name of the cluster of the profile called name in
// namespace: "<namespace>:<name>". The result passes
// clusterregistry.ValidateName when both are valid Kubernetes names and the
// whole is at most 253 characters.
func ClusterName(namespace, name string) string { return namespace + ":" + name }

// ExecExtensions say which of a profile's extensions may add to the
// operator's exec plugin.
type ExecExtensions struct {
	// Args allows ArgsExtension: arguments after the provider's own.
	Args bool
	// Env allows EnvExtension: environment variables after the provider's
	// own.
	Env bool
}

// An Option configures a Source.
type Option interface {
	apply(*options)
}

type options struct {
	// nudge is how often Watch asks for a List while its informer fails.
	nudge       time.Duration
	namespace   string
	selector    string
	defaultName string
	policy      trust.Policy
	rename      func(string) string
	maxClusters int
	extensions  ExecExtensions
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithNamespace reads the profiles of one namespace. Default: all
// namespaces.
func WithNamespace(ns string) Option {
	return optionFunc(func(o *options) { o.namespace = ns })
}

// WithLabelSelector selects the profiles by a label selector, in the syntax
// of kubectl's --selector, such as "x-k8s.io/cluster-manager=ocm".
// Default: every profile.
func WithLabelSelector(selector string) Option {
	return optionFunc(func(o *options) { o.selector = selector })
}

// WithDefault marks the cluster called name (after WithRename) as the
// default.
func WithDefault(name string) Option {
	return optionFunc(func(o *options) { o.defaultName = name })
}

// WithTrustPolicy sets which settings of a profile's cluster entry the
// source accepts: insecure-skip-tls-verify, proxy-url and a
// certificate-authority file. A refused one is listed with an error that
// names it and wraps trust.ErrRefused. Default: trust.Untrusted.
func WithTrustPolicy(p trust.Policy) Option {
	return optionFunc(func(o *options) { o.policy = p })
}

// WithExecExtensions sets which extensions of a profile's cluster entry may
// add arguments or environment variables to the operator's exec plugin.
// Default: neither; they are ignored.
func WithExecExtensions(e ExecExtensions) Option {
	return optionFunc(func(o *options) { o.extensions = e })
}

// WithRename sets a function that maps ClusterName(namespace, name) to the
// cluster's name; the result must pass clusterregistry.ValidateName.
func WithRename(rename func(name string) string) Option {
	return optionFunc(func(o *options) { o.rename = rename })
}

// WithMaxClusters bounds the profiles one List may select; past it List
// fails, and the Syncer keeps its last good state. Default:
// DefaultMaxClusters.
func WithMaxClusters(n int) Option {
	return optionFunc(func(o *options) { o.maxClusters = n })
}

// A Source lists the clusters of the selected ClusterProfiles. All methods
// are safe for concurrent use; several Watch calls may run at once.
type Source struct {
	client    dynamic.Interface
	providers []Provider
	opts      options
	selector  labels.Selector

	mu     sync.Mutex // protects stores
	stores map[cache.Store]*informers.Health
}

var _ clusterregistry.Watcher = (*Source)(nil)

// New returns a Source that reads ClusterProfiles through client and
// reaches their clusters with providers, the operator's, in order of
// preference. It validates its arguments and starts nothing.
func New(client dynamic.Interface, providers []Provider, opts ...Option) (*Source, error) {
	o := options{nudge: informers.NudgePeriod, policy: trust.Untrusted, maxClusters: DefaultMaxClusters}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if client == nil {
		return nil, errors.New("clusterprofile: client must not be nil")
	}
	if err := checkProviders(providers); err != nil {
		return nil, fmt.Errorf("clusterprofile: %w", err)
	}
	selector, err := labels.Parse(o.selector)
	if err != nil {
		return nil, fmt.Errorf("clusterprofile: label selector: %w", err)
	}
	if err := kcfg.CheckLimits(1, o.maxClusters); err != nil {
		return nil, fmt.Errorf("clusterprofile: %w", err)
	}
	ps := make([]Provider, len(providers))
	for i, p := range providers {
		ps[i] = Provider{Name: p.Name, ExecConfig: p.ExecConfig.DeepCopy()}
	}
	return &Source{client: client, providers: ps, opts: o, selector: selector, stores: map[cache.Store]*informers.Health{}}, nil
}

// List returns one cluster per selected ClusterProfile, sorted by name. It
// reads the cache of a running Watch, or else lists the profiles from the
// API server, in chunks. It fails when that List fails, and when more
// profiles than WithMaxClusters are selected.
func (s *Source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var profiles []*unstructured.Unstructured
	add := func(u *unstructured.Unstructured) error {
		if !s.selector.Matches(labels.Set(u.GetLabels())) {
			return nil
		}
		if len(profiles) == s.opts.maxClusters {
			return fmt.Errorf("clusterprofile: %w", kcfg.TooMany(s.opts.maxClusters))
		}
		profiles = append(profiles, u)
		return nil
	}
	if store := s.store(); store != nil {
		for _, obj := range store.List() {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				if err := add(u); err != nil {
					return nil, err
				}
			}
		}
	} else {
		opts := metav1.ListOptions{LabelSelector: s.selector.String(), Limit: listChunk}
		for {
			list, err := s.client.Resource(profilesGVR).Namespace(s.opts.namespace).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list clusterprofiles: %w", err)
			}
			for i := range list.Items {
				if err := add(&list.Items[i]); err != nil {
					return nil, err
				}
			}
			if list.GetContinue() == "" {
				break
			}
			opts.Continue = list.GetContinue()
		}
	}
	sets, err := s.clusterSets(ctx, profiles)
	if err != nil {
		return nil, err
	}
	return s.clusters(profiles, sets), nil
}

// clusterSets returns the clusterset label of each namespace of profiles.
// A namespace the source may not read, or that is gone, has none.
func (s *Source) clusterSets(ctx context.Context, profiles []*unstructured.Unstructured) (map[string]string, error) {
	sets := map[string]string{}
	for _, p := range profiles {
		ns := p.GetNamespace()
		if _, done := sets[ns]; done {
			continue
		}
		sets[ns] = ""
		u, err := s.client.Resource(namespaces).Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		case err != nil:
			return nil, fmt.Errorf("get namespace %s: %w", ns, err)
		default:
			sets[ns] = u.GetLabels()[LabelClusterSet]
		}
	}
	return sets, nil
}

// store returns the cache of a running Watch whose informer is in step with
// the API server, or nil.
func (s *Source) store() cache.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st, h := range s.stores {
		if h.Fresh() {
			return st
		}
	}
	return nil
}

// clusters turns the profiles into clusters, sorted by name.
func (s *Source) clusters(profiles []*unstructured.Unstructured, sets map[string]string) []clusterregistry.Cluster {
	slices.SortFunc(profiles, func(a, b *unstructured.Unstructured) int { return strings.Compare(location(a), location(b)) })
	defs := make([]dedup.Def, len(profiles))
	for i, u := range profiles {
		defs[i] = dedup.Def{Cluster: s.cluster(u, sets[u.GetNamespace()]), Location: location(u), Field: "metadata.name"}
	}
	out := dedup.Clusters(defs)
	for i := range out {
		out[i].Default = s.isDefault(out[i].Name)
	}
	return out
}

func (s *Source) isDefault(name string) bool {
	return s.opts.defaultName != "" && name == s.opts.defaultName
}

// cluster turns one profile into a cluster; clusterSet is its namespace's
// clusterset.
func (s *Source) cluster(u *unstructured.Unstructured, clusterSet string) clusterregistry.Cluster {
	c := clusterregistry.Cluster{Name: ClusterName(u.GetNamespace(), u.GetName())}
	if s.opts.rename != nil {
		c.Name = s.opts.rename(c.Name)
	}
	c.Default = s.isDefault(c.Name)
	p, err := decode(u)
	if err != nil {
		c.Err = err
		c.Labels = map[string]string{LabelNamespace: u.GetNamespace(), LabelName: u.GetName()}
		return c
	}
	c.Labels = s.labels(u, p, clusterSet)
	if err := clusterregistry.ValidateName(c.Name); err != nil {
		c.Err = &clusterregistry.FieldError{Location: location(u), Field: "metadata.name", Err: kcfg.NameErr(c.Name, err)}
		return c
	}
	c.Config, c.Revision, c.Err = s.restConfig(u, p)
	return c
}

// Watch runs an informer on the selected ClusterProfiles and calls changed
// whenever one is created, deleted, or changed in what List makes of it.
// While it runs, List reads the informer's cache. It blocks until ctx is
// done, and returns once the informer has stopped and every goroutine it
// started has ended.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	profiles := s.client.Resource(profilesGVR).Namespace(s.opts.namespace)
	selected := func(o metav1.ListOptions) metav1.ListOptions {
		o.LabelSelector = s.selector.String()
		return o
	}
	set := informers.NewSet(changed, s.opts.nudge)
	store, health, err := set.Add(informers.Resource{
		Client: s.client,
		Object: &unstructured.Unstructured{},
		List: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return profiles.List(ctx, selected(o))
		},
		Watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return profiles.Watch(ctx, selected(o))
		},
		Transform: trim,
		Changed: func(oldObj, newObj any) bool {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			// A relist delivers unchanged profiles as updates, and a
			// status update that List does not read is no change.
			return !ok1 || !ok2 || !sameProfile(o, n)
		},
	})
	if err != nil {
		return fmt.Errorf("clusterprofile informer: %w", err)
	}
	// While the informer fails, List asks the API server.
	set.Run(ctx, func() func() {
		s.mu.Lock()
		s.stores[store] = health
		s.mu.Unlock()
		return func() {
			s.mu.Lock()
			delete(s.stores, store)
			s.mu.Unlock()
		}
	})
	return nil
}

// sameProfile reports whether a and b, trimmed, are the same to List.
func sameProfile(a, b *unstructured.Unstructured) bool {
	return reflect.DeepEqual(a.GetLabels(), b.GetLabels()) &&
		reflect.DeepEqual(a.Object["spec"], b.Object["spec"]) &&
		reflect.DeepEqual(a.Object["status"], b.Object["status"])
}

// trim keeps of a profile what List reads, in a new object that shares
// those parts with obj (neither is ever changed): its metadata's namespace,
// name, resourceVersion and labels, its spec, and the status fields of profile, with each
// condition's type and status alone, so that a condition's heartbeat or
// message is no change.
func trim(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	meta := map[string]any{"namespace": u.GetNamespace(), "name": u.GetName(), "resourceVersion": u.GetResourceVersion()}
	if m, ok := u.Object["metadata"].(map[string]any); ok {
		if l, ok := m["labels"]; ok {
			meta["labels"] = l
		}
	}
	out := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": meta}
	if spec, ok := u.Object["spec"]; ok {
		out["spec"] = spec
	}
	if st, ok := u.Object["status"].(map[string]any); ok {
		status := map[string]any{}
		for _, k := range []string{"version", "properties", "accessProviders", "credentialProviders"} {
			if v, ok := st[k]; ok {
				status[k] = v
			}
		}
		if conds, ok := st["conditions"].([]any); ok {
			kept := make([]any, 0, len(conds))
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok {
					kept = append(kept, map[string]any{"type": m["type"], "status": m["status"]})
				}
			}
			status["conditions"] = kept
		} else if v, ok := st["conditions"]; ok {
			status["conditions"] = v // not a list: decode reports it
		}
		out["status"] = status
	} else if v, ok := u.Object["status"]; ok {
		out["status"] = v
	}
	return &unstructured.Unstructured{Object: out}, nil
}
