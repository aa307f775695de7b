// Package incluster provides a cluster source for the cluster that the
// process runs in, reached through its service account, as
// rest.InClusterConfig does.
//
//	src, err := incluster.New(incluster.WithDefault(true))
//	if err != nil { ... }
//	// Often merged with other sources:
//	all := compose.Merge(src, kubeconfigDir)
//
// The Source reads the environment (KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT) and the service account's files on every List.
// The certificate authority goes into the config inline, so a rotated CA
// makes a new config at the next sync. The token stays a file
// (rest.Config.BearerTokenFile), which client-go re-reads as the kubelet
// rotates it, so a new token needs no new client.
//
// When the process does not run in a cluster, or the service account's files
// cannot be read, List returns the cluster with Err set to a
// *clusterregistry.FieldError, or nothing at all with Optional.
//
// The source reads the process's own service account, so its trust policy
// is trust.Trusted; WithTrustPolicy can change it, though a
// policy that refuses local files refuses the in-cluster config, whose token
// and CA are files.
package incluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"

	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/safefile"
	"github.com/clusterregistry/clusterregistry/trust"
)

// Defaults of the options.
const (
	// DefaultName is the cluster's name.
	DefaultName = "in-cluster"
	// DefaultTokenFile is the service account token the pod is given.
	DefaultTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	// DefaultCAFile is the cluster's CA bundle the pod is given.
	DefaultCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// location is the FieldError.Location of the Source's errors.
const location = "in-cluster config"

// A Source lists the cluster that the process runs in. It is safe for
// concurrent use.
type Source struct {
	opts options
}

var _ clusterregistry.ClusterSource = (*Source)(nil)

// An Option configures a Source.
type Option interface {
	apply(*options)
}

type options struct {
	name      string
	isDefault bool
	labels    map[string]string
	tokenFile string
	caFile    string
	getenv    func(string) string
	optional  bool
	policy    trust.Policy
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithName sets the cluster's name. Default: "in-cluster", the name Argo CD
// gives it.
func WithName(name string) Option {
	return optionFunc(func(o *options) { o.name = name })
}

// WithDefault sets whether the cluster is the default. Default: false.
func WithDefault(isDefault bool) Option {
	return optionFunc(func(o *options) { o.isDefault = isDefault })
}

// WithLabels sets the cluster's labels. The Source keeps its own copy.
func WithLabels(labels map[string]string) Option {
	return optionFunc(func(o *options) { o.labels = maps.Clone(labels) })
}

// WithTokenFile sets the service account token's path. Default:
// DefaultTokenFile.
func WithTokenFile(path string) Option {
	return optionFunc(func(o *options) { o.tokenFile = path })
}

// WithCAFile sets the path of the API server's certificate authority.
// Default: DefaultCAFile.
func WithCAFile(path string) Option {
	return optionFunc(func(o *options) { o.caFile = path })
}

// WithGetenv sets how the Source reads KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT. Default: os.Getenv.
func WithGetenv(getenv func(key string) string) Option {
	return optionFunc(func(o *options) { o.getenv = getenv })
}

// Optional makes List return no cluster, instead of one with an error, when
// the process does not run in a cluster (the environment variables are not
// set). A program that runs both inside and outside a cluster merges an
// optional in-cluster Source with its other sources.
func Optional() Option {
	return optionFunc(func(o *options) { o.optional = true })
}

// WithTrustPolicy sets the trust policy that the in-cluster config must
// pass before its files are read. Its token file and CA file are local
// files, so a policy without AllowLocalFiles makes the cluster's error (a
// *clusterregistry.FieldError that wraps trust.ErrRefused).
// Default: trust.Trusted.
func WithTrustPolicy(p trust.Policy) Option {
	return optionFunc(func(o *options) { o.policy = p })
}

// New returns a Source. It reads nothing until List.
func New(opts ...Option) (*Source, error) {
	o := options{
		name:      DefaultName,
		tokenFile: DefaultTokenFile,
		caFile:    DefaultCAFile,
		getenv:    os.Getenv,
		policy:    trust.Trusted,
	}
	for _, opt := range opts {
		opt.apply(&o)
	}
	var errs []error
	if o.name == "" {
		errs = append(errs, errors.New("name must not be empty"))
	}
	if o.tokenFile == "" || o.caFile == "" {
		errs = append(errs, errors.New("token and CA file paths must not be empty"))
	}
	if o.getenv == nil {
		errs = append(errs, errors.New("getenv must not be nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("incluster: %w", err)
	}
	return &Source{opts: o}, nil
}

// List returns the in-cluster cluster, with Err set if it cannot be reached
// from here; with Optional, it returns nothing outside a cluster. It fails
// only when ctx is done.
func (s *Source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := &s.opts
	c := clusterregistry.Cluster{Name: o.name, Default: o.isDefault, Labels: o.labels}
	host, port := o.getenv("KUBERNETES_SERVICE_HOST"), o.getenv("KUBERNETES_SERVICE_PORT")
	switch {
	case (host == "" || port == "") && o.optional:
		return nil, nil
	case host == "":
		c.Err = fieldErr("env KUBERNETES_SERVICE_HOST", errors.New("not set: not running in a Kubernetes cluster"))
		return []clusterregistry.Cluster{c}, nil
	case port == "":
		c.Err = fieldErr("env KUBERNETES_SERVICE_PORT", errors.New("not set: not running in a Kubernetes cluster"))
		return []clusterregistry.Cluster{c}, nil
	}

	// The policy sees the config as it will be, files included, before any
	// file is read.
	shape := &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		TLSClientConfig: rest.TLSClientConfig{CAFile: o.caFile},
		BearerTokenFile: o.tokenFile,
	}
	if err := o.policy.CheckConfig(shape); err != nil {
		c.Err = refusal(err)
		return []clusterregistry.Cluster{c}, nil
	}

	// Check the token file now, so that a missing one is an error of the
	// description rather than of every request.
	if err := safefile.Check(o.tokenFile); err != nil {
		c.Err = fieldErr("tokenFile", err)
		return []clusterregistry.Cluster{c}, nil
	}
	ca, err := readCA(o.caFile)
	if err != nil {
		c.Err = fieldErr("caFile", err)
		return []clusterregistry.Cluster{c}, nil
	}
	c.Config = &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		BearerTokenFile: o.tokenFile,
	}
	return []clusterregistry.Cluster{c}, nil
}

func fieldErr(field string, err error) error {
	return &clusterregistry.FieldError{Location: location, Field: field, Err: err}
}

// policyFields names the settings that trust.Policy.CheckConfig names by their
// rest.Config fields as this source's errors name them.
var policyFields = map[string]string{
	"config.caFile":          "caFile",
	"config.bearerTokenFile": "tokenFile",
}

func refusal(err error) error {
	var fe *clusterregistry.FieldError
	if !errors.As(err, &fe) {
		return fieldErr("config", err)
	}
	field, ok := policyFields[fe.Field]
	if !ok {
		field = fe.Field
	}
	return fieldErr(field, fe.Err)
}

// maxCASize bounds the CA bundle: a few certificates.
const maxCASize = 1 << 20

// readCA reads the CA bundle: a regular file (safefile refuses anything
// else, and reads from the very file it checked), not empty.
func readCA(path string) ([]byte, error) {
	data, err := safefile.Read(path, maxCASize)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return data, nil
}
