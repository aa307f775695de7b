// Package kcfg decodes kubeconfigs and turns their contexts into
// clusterregistry.Cluster values, for the sources of this module.
//
// It decodes the kubeconfig itself rather than with clientcmd.Load, because
// clientcmd's error for a user listed twice prints the whole user list, tokens
// and keys included. Every problem is a *clusterregistry.FieldError that names
// the location and the field and never quotes a credential.
//
// A context's cluster and user entries go through the trust policy of the file
// that defines them (Options.Policy) before anything they name is read: a
// refused exec plugin, auth-provider or file reference leaves the context
// with an error and no config, so nothing is read now and nothing can run
// later. Once a context has passed the checks, it is written out alone (its
// cluster and user, with paths resolved and certificate files read in) and
// handed to clientcmd, so that the rest.Config is the one kubectl would use.
package kcfg

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/internal/restconfig"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
	"github.com/clusterregistry/clusterregistry/source/internal/safefile"
	"github.com/clusterregistry/clusterregistry/trust"
)

// execInfoExtension is the cluster extension that client-go hands to exec
// plugins that ask for cluster info. No other extension reaches a rest.Config.
const execInfoExtension = "client.authentication.k8s.io/exec"

// Options say where a kubeconfig came from and what it may refer to.
type Options struct {
	// Location is where the kubeconfig came from (a file path, a Secret's
	// namespace/name, a table row); it becomes FieldError.Location.
	Location string
	// Field names the kubeconfig within its location, such as
	// "data[kubeconfig]". Errors about the whole document use it as their
	// field, and errors about an entry prefix it to theirs. Empty for a file,
	// whose document errors then name the field "kubeconfig".
	Field string
	// Dir is the directory that relative paths are resolved against. Empty
	// leaves them relative to the working directory, as client-go does for a
	// kubeconfig that did not come from a file.
	Dir string
	// Policy says which settings the kubeconfig may use. It is applied to a
	// context's cluster and user entries before any file they name is read.
	// The zero Policy refuses everything it covers.
	Policy trust.Policy
	// MaxSize bounds the kubeconfig's size in bytes; 0 means no bound.
	MaxSize int64
	// Rename, when set, gives the cluster name of a context (Set.Clusters);
	// without it the cluster is named after the context.
	Rename func(context string) string
}

// A File is one decoded kubeconfig. It is immutable and safe to share.
type File struct {
	opts     Options
	current  string
	contexts []clientcmdv1.NamedContext
	clusters []clientcmdv1.NamedCluster
	users    []clientcmdv1.NamedAuthInfo
	// stale, when set, says that the File is the last good content of a
	// source whose newer content could not be used; every cluster drawn from
	// it carries this error.
	stale error
	// defs holds what Defs resolves, once; nil in a stale copy.
	defs *lazyDefs
}

// lazyDefs is Merge(f).Defs() of one File, resolved on first use.
type lazyDefs struct {
	once sync.Once
	defs []dedup.Def
}

// Decode decodes a kubeconfig, YAML or JSON. Blank input is an empty
// kubeconfig. A document that cannot be decoded returns a *FieldError whose
// message quotes nothing from the input.
func Decode(data []byte, opts Options) (*File, error) {
	f := &File{opts: opts, defs: &lazyDefs{}}
	if opts.MaxSize > 0 && int64(len(data)) > opts.MaxSize {
		return nil, f.docErr(fmt.Errorf("%d bytes: %w", len(data), TooBig(opts.MaxSize)))
	}
	js, err := yaml.ToJSON(data)
	if err != nil {
		return nil, f.docErr(Redact(err))
	}
	var raw clientcmdv1.Config
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, f.docErr(Redact(err))
	}
	f.current = raw.CurrentContext
	f.contexts = raw.Contexts
	f.clusters = raw.Clusters
	f.users = raw.AuthInfos
	return f, nil
}

// IsBlank reports whether data holds nothing but white space.
func IsBlank(data []byte) bool { return len(bytes.TrimSpace(data)) == 0 }

// Contexts returns the number of contexts the file lists.
func (f *File) Contexts() int { return len(f.contexts) }

// WithStale returns a copy of f whose clusters all carry err: f is the last
// good content of a source whose newer content could not be used.
func (f *File) WithStale(err error) *File {
	c := *f
	c.stale = err
	c.defs = nil
	return &c
}

// readsFiles reports whether resolving f's contexts may read local files:
// the certificate authorities, client certificates and keys of Refs, and
// token files, which client-go reads and which must exist. Such a result may
// change while f stays the same.
func (f *File) readsFiles() bool {
	if !f.opts.Policy.AllowLocalFiles {
		return false // every file reference is refused
	}
	for _, c := range f.clusters {
		if c.Cluster.CertificateAuthority != "" {
			return true
		}
	}
	for _, u := range f.users {
		if u.AuthInfo.ClientCertificate != "" || u.AuthInfo.ClientKey != "" || u.AuthInfo.TokenFile != "" {
			return true
		}
	}
	return false
}

// Defs returns Merge(f).Defs(). A File is immutable, so unless f reads local
// files or is stale, its contexts are resolved on the first call only; every
// call returns its own copies of the configs, which the caller may change.
func (f *File) Defs() []dedup.Def {
	if f.defs == nil || f.stale != nil || f.readsFiles() {
		return Merge(f).Defs()
	}
	f.defs.once.Do(func() { f.defs.defs = Merge(f).Defs() })
	defs := slices.Clone(f.defs.defs)
	for i := range defs {
		defs[i].Cluster.Config = restconfig.Copy(defs[i].Cluster.Config)
	}
	return defs
}

// Refs returns the local files that f's clusters and users read when they are
// resolved (certificate authorities, client certificates and keys), with
// relative paths resolved, sorted and without repeats. Token files are not
// among them: client-go reads those itself, on every use.
func (f *File) Refs() []string {
	if !f.opts.Policy.AllowLocalFiles {
		return nil
	}
	var refs []string
	add := func(p string) {
		if p != "" {
			refs = append(refs, f.path(p))
		}
	}
	for _, c := range f.clusters {
		add(c.Cluster.CertificateAuthority)
	}
	for _, u := range f.users {
		add(u.AuthInfo.ClientCertificate)
		add(u.AuthInfo.ClientKey)
	}
	slices.Sort(refs)
	return slices.Compact(refs)
}

func (f *File) path(p string) string {
	if p == "" || filepath.IsAbs(p) || f.opts.Dir == "" {
		return p
	}
	return filepath.Join(f.opts.Dir, p)
}

// Err returns a *FieldError for field of f.
func (f *File) Err(field string, err error) error {
	return &clusterregistry.FieldError{Location: f.opts.Location, Field: f.field(field), Err: err}
}

// field names field of f within its location.
func (f *File) field(field string) string {
	if f.opts.Field != "" {
		return f.opts.Field + "." + field
	}
	return field
}

func (f *File) docErr(err error) error {
	field := f.opts.Field
	if field == "" {
		field = "kubeconfig"
	}
	return &clusterregistry.FieldError{Location: f.opts.Location, Field: field, Err: err}
}

// entry is one named entry of a Set and the file that defined it first.
type entry[T any] struct {
	val   T
	file  *File
	count int // how many times file defines the name
}

// A Set is one or more Files merged as client-go merges a KUBECONFIG list:
// the first file to define a name, or a current-context, wins. A name that
// one file defines twice is an error for the contexts that use it.
type Set struct {
	first    *File // nil if none
	current  string
	contexts map[string]*entry[clientcmdv1.Context]
	clusters map[string]*entry[clientcmdv1.Cluster]
	users    map[string]*entry[clientcmdv1.AuthInfo]
}

// Merge merges files, earlier ones first.
func Merge(files ...*File) *Set {
	s := &Set{
		contexts: map[string]*entry[clientcmdv1.Context]{},
		clusters: map[string]*entry[clientcmdv1.Cluster]{},
		users:    map[string]*entry[clientcmdv1.AuthInfo]{},
	}
	for _, f := range files {
		if s.first == nil {
			s.first = f
		}
		if s.current == "" {
			s.current = f.current
		}
		for _, c := range f.contexts {
			add(s.contexts, f, c.Name, c.Context)
		}
		for _, c := range f.clusters {
			add(s.clusters, f, c.Name, c.Cluster)
		}
		for _, u := range f.users {
			add(s.users, f, u.Name, u.AuthInfo)
		}
	}
	return s
}

func add[T any](m map[string]*entry[T], f *File, name string, v T) {
	switch e, ok := m[name]; {
	case !ok:
		m[name] = &entry[T]{val: v, file: f, count: 1}
	case e.file == f:
		e.count++
	}
	// Otherwise an earlier file defined the name, and it wins.
}

// CurrentContext returns the merged current-context.
func (s *Set) CurrentContext() string { return s.current }

// Contexts returns the context names, sorted.
func (s *Set) Contexts() []string {
	names := make([]string, 0, len(s.contexts))
	for n := range s.contexts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Clusters returns one Cluster per context, sorted by name, the current
// context marked Default. Each cluster is named by the Rename of the file
// that defines its context, or after the context. A name that fails
// clusterregistry.ValidateName is listed with an error and no Config; a name
// that two contexts are renamed to is listed once, as dedup.Clusters says.
func (s *Set) Clusters() []clusterregistry.Cluster { return dedup.Clusters(s.Defs()) }

// Defs returns one definition per context, sorted by context name: the
// context resolved (Cluster) and renamed, at the location of the file that
// defines it, named by the field of the context's name. A renamed name that
// fails clusterregistry.ValidateName has an error instead of a Config.
func (s *Set) Defs() []dedup.Def {
	names := s.Contexts()
	defs := make([]dedup.Def, 0, len(names))
	for _, n := range names {
		f := s.contexts[n].file
		name := f.rename(n)
		field := "contexts[" + n + "].name"
		var c clusterregistry.Cluster
		if err := clusterregistry.ValidateName(name); err != nil {
			// Not resolved: the Syncer ignores the name anyway.
			c = clusterregistry.Cluster{Name: name, Default: n != "" && n == s.current,
				Err: f.Err(field, NameErr(name, err))}
		} else {
			c = s.Cluster(n)
			c.Name = name
		}
		defs = append(defs, dedup.Def{Cluster: c, Location: f.opts.Location, Field: f.field(field)})
	}
	return defs
}

func (f *File) rename(context string) string {
	if f.opts.Rename == nil {
		return context
	}
	return f.opts.Rename(context)
}

// Cluster resolves the context called name into a Cluster of that name, marked
// Default if it is the current context. A context that cannot be used has Err
// set and no Config. A context that draws on stale content has the stale
// error as Err, beside the Config of that content.
func (s *Set) Cluster(name string) clusterregistry.Cluster {
	c := clusterregistry.Cluster{Name: name, Default: name != "" && name == s.current}
	ce, ok := s.contexts[name]
	if !ok {
		err := fmt.Errorf("context %q not found", name)
		if s.first == nil {
			c.Err = &clusterregistry.FieldError{Field: "contexts", Err: err}
		} else {
			c.Err = s.first.Err("contexts", err)
		}
		return c
	}
	cfg, files, err := s.restConfig(name, ce)
	c.Config, c.Err = cfg, err
	for _, f := range files {
		if f.stale != nil {
			c.Err = f.stale
			break
		}
	}
	return c
}

// ErrEmpty is the error of a field that must be set and is not.
var ErrEmpty = errors.New("must not be empty")

// One resolves the context of a kubeconfig that describes one cluster: its
// current-context, or else its only context. The Cluster is named after the
// context; callers rename it.
func One(f *File) clusterregistry.Cluster {
	set := Merge(f)
	name := set.CurrentContext()
	if name == "" {
		names := set.Contexts()
		if len(names) != 1 {
			return clusterregistry.Cluster{Err: f.Err("current-context", fmt.Errorf("not set, and the kubeconfig has %d contexts", len(names)))}
		}
		name = names[0]
	}
	return set.Cluster(name)
}

// restConfig resolves one context. It also returns the files the context drew
// on, the context's own first.
func (s *Set) restConfig(name string, ce *entry[clientcmdv1.Context]) (*rest.Config, []*File, error) {
	f := ce.file
	files := []*File{f}
	cf := "contexts[" + name + "]"
	if name == "" {
		return nil, files, f.Err("contexts[].name", ErrEmpty)
	}
	if ce.count > 1 {
		return nil, files, f.Err(cf, fmt.Errorf("defined %d times", ce.count))
	}
	ctx := ce.val

	if ctx.Cluster == "" {
		return nil, files, f.Err(cf+".cluster", ErrEmpty)
	}
	ke, ok := s.clusters[ctx.Cluster]
	if !ok {
		return nil, files, f.Err(cf+".cluster", fmt.Errorf("cluster %q not found", ctx.Cluster))
	}
	files = append(files, ke.file)
	kf := "clusters[" + ctx.Cluster + "]"
	if ke.count > 1 {
		return nil, files, ke.file.Err(kf, fmt.Errorf("defined %d times", ke.count))
	}

	// client-go refuses a context without a user; say so here, by field.
	if ctx.AuthInfo == "" {
		return nil, files, f.Err(cf+".user", ErrEmpty)
	}
	ue, ok := s.users[ctx.AuthInfo]
	if !ok {
		return nil, files, f.Err(cf+".user", fmt.Errorf("user %q not found", ctx.AuthInfo))
	}
	files = append(files, ue.file)
	uf := "users[" + ctx.AuthInfo + "]"
	if ue.count > 1 {
		return nil, files, ue.file.Err(uf, fmt.Errorf("defined %d times", ue.count))
	}

	// The trust policy comes first: nothing the entries name is read before
	// it, and a refused entry gets no config, so nothing can run later.
	if err := ke.file.checkCluster(kf, ke.val); err != nil {
		return nil, files, err
	}
	if err := ue.file.checkUser(uf, ue.val); err != nil {
		return nil, files, err
	}

	cluster, err := ke.file.cluster(kf, ke.val)
	if err != nil {
		return nil, files, err
	}
	user, err := ue.file.user(uf, ue.val)
	if err != nil {
		return nil, files, err
	}

	// The context alone, checked and self-contained, goes through clientcmd.
	clean := clientcmdv1.Config{
		APIVersion:     "v1",
		Kind:           "Config",
		Clusters:       []clientcmdv1.NamedCluster{{Name: ctx.Cluster, Cluster: cluster}},
		AuthInfos:      []clientcmdv1.NamedAuthInfo{{Name: ctx.AuthInfo, AuthInfo: user}},
		Contexts:       []clientcmdv1.NamedContext{{Name: name, Context: clientcmdv1.Context{Cluster: ctx.Cluster, AuthInfo: ctx.AuthInfo}}},
		CurrentContext: name,
	}
	// What clientcmd.Load does with a file's bytes (default, then convert to
	// the internal version), without encoding the entries for it to decode:
	// that round trip through its YAML parser was half the cost of a
	// cluster.
	clientcmdlatest.Scheme.Default(&clean)
	api := clientcmdapi.NewConfig()
	if err := clientcmdlatest.Scheme.Convert(&clean, api, nil); err != nil {
		return nil, files, f.Err(cf, Redact(err))
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*api, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		// The checks above leave client-go only messages made of names,
		// field names and file paths.
		return nil, files, f.Err(cf, err)
	}
	if user.Token == "" && cfg.BearerTokenFile != "" {
		// clientcmd read the token file; client-go's transport reads it again
		// on use, so a rotated token needs no new client.
		cfg.BearerToken = ""
	}
	return cfg, files, nil
}

// cluster checks one cluster entry and makes it self-contained.
func (f *File) cluster(field string, c clientcmdv1.Cluster) (clientcmdv1.Cluster, error) {
	if c.Server == "" {
		return c, f.Err(field+".server", ErrEmpty)
	}
	// Neither message quotes the URL: it may carry a user and password.
	if _, err := url.Parse(c.Server); err != nil {
		return c, f.Err(field+".server", errors.New("not a valid URL"))
	}
	if c.ProxyURL != "" {
		if _, err := ParseProxyURL(c.ProxyURL); err != nil {
			return c, f.Err(field+".proxy-url", err)
		}
	}
	if c.CertificateAuthority != "" {
		data, err := f.readRef(field, "certificate-authority", c.CertificateAuthority, len(c.CertificateAuthorityData) > 0)
		if err != nil {
			return c, err
		}
		c.CertificateAuthority, c.CertificateAuthorityData = "", data
	}
	ext := c.Extensions
	c.Extensions = nil
	for _, e := range ext {
		if e.Name != execInfoExtension {
			continue
		}
		if c.Extensions != nil {
			return c, f.Err(field+".extensions["+execInfoExtension+"]", errors.New("defined more than once"))
		}
		c.Extensions = []clientcmdv1.NamedExtension{e}
	}
	return c, nil
}

// user checks one user entry and makes it self-contained.
func (f *File) user(field string, u clientcmdv1.AuthInfo) (clientcmdv1.AuthInfo, error) {
	u.Extensions = nil
	if u.ClientCertificate != "" {
		data, err := f.readRef(field, "client-certificate", u.ClientCertificate, len(u.ClientCertificateData) > 0)
		if err != nil {
			return u, err
		}
		u.ClientCertificate, u.ClientCertificateData = "", data
	}
	if u.ClientKey != "" {
		data, err := f.readRef(field, "client-key", u.ClientKey, len(u.ClientKeyData) > 0)
		if err != nil {
			return u, err
		}
		u.ClientKey, u.ClientKeyData = "", data
	}
	if u.TokenFile != "" {
		if !f.opts.Policy.AllowLocalFiles {
			return u, f.Err(field+".tokenFile", errNoFiles)
		}
		u.TokenFile = f.path(u.TokenFile)
		// clientcmd reads the file; make sure that read ends.
		if err := safefile.Check(u.TokenFile); err != nil {
			return u, f.Err(field+".tokenFile", err)
		}
	}
	if u.Exec != nil {
		if !f.opts.Policy.AllowExec {
			return u, f.Err(field+".exec", trust.ErrRefused)
		}
		exec := *u.Exec
		// As client-go: a command with a path separator is a path, resolved
		// against the kubeconfig's directory; one without is looked up in PATH.
		if strings.ContainsRune(exec.Command, filepath.Separator) {
			if !f.opts.Policy.AllowLocalFiles && !filepath.IsAbs(exec.Command) {
				return u, f.Err(field+".exec.command", errRelativeCommand)
			}
			exec.Command = f.path(exec.Command)
		}
		u.Exec = &exec
	}
	return u, nil
}

var (
	errNoFiles         = fmt.Errorf("%w: refers to a local file", trust.ErrRefused)
	errRelativeCommand = fmt.Errorf("%w: a relative path is resolved against local files; use an absolute path or a name looked up in PATH", trust.ErrRefused)
)

// checkCluster applies f's trust policy to a cluster entry. A refusal names
// the entry's field, such as clusters[c].certificate-authority.
func (f *File) checkCluster(field string, c clientcmdv1.Cluster) error {
	c.Extensions = nil // not covered by the policy, and all but one dropped
	var ac clientcmdapi.Cluster
	if err := clientcmdv1.Convert_v1_Cluster_To_api_Cluster(&c, &ac, nil); err != nil {
		return f.Err(field, Redact(err))
	}
	return f.refused(field, "cluster.", f.opts.Policy.CheckKubeconfig(&ac, nil))
}

// checkUser applies f's trust policy to a user entry. A refusal names the
// entry's field, such as users[u].exec.
func (f *File) checkUser(field string, u clientcmdv1.AuthInfo) error {
	u.Extensions = nil
	var au clientcmdapi.AuthInfo
	if err := clientcmdv1.Convert_v1_AuthInfo_To_api_AuthInfo(&u, &au, nil); err != nil {
		return f.Err(field, Redact(err))
	}
	return f.refused(field, "user.", f.opts.Policy.CheckKubeconfig(nil, &au))
}

// refused turns the policy's error, whose field is "cluster.exec" or the
// like, into one that names the entry and the location.
func (f *File) refused(entry, prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *clusterregistry.FieldError
	if errors.As(err, &fe) && strings.HasPrefix(fe.Field, prefix) {
		return f.Err(entry+"."+strings.TrimPrefix(fe.Field, prefix), fe.Err)
	}
	return f.Err(entry, err)
}

// readRef reads a file that a kubeconfig refers to, so that its content goes
// into the config inline: client-go then starts no goroutine to reload it.
func (f *File) readRef(entry, name, path string, inline bool) ([]byte, error) {
	field := entry + "." + name
	if !f.opts.Policy.AllowLocalFiles {
		return nil, f.Err(field, errNoFiles)
	}
	if inline {
		return nil, f.Err(field, fmt.Errorf("set together with %s-data", name))
	}
	data, err := ReadSmallFile(f.path(path))
	if err != nil {
		return nil, f.Err(field, err)
	}
	return data, nil
}

// quoted matches what a decoder may quote from its input.
var quoted = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|`[^`]*`|'[^']*'")

const maxMessage = 300

// Redact returns a copy of err's message with every quoted part removed and
// its length bounded. Decoders quote the input they choke on, which may be a
// credential; line numbers and type names survive. The result does not wrap
// err, so the original cannot be reached through it.
func Redact(err error) error {
	msg := quoted.ReplaceAllString(err.Error(), "…")
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "…"
	}
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "?")
	}
	return errors.New(msg)
}
