// Package kubeconfig provides cluster sources that read kubeconfig files: a
// Source that follows client-go's loading rules (an explicit path, the
// KUBECONFIG list, or ~/.kube/config), and a Dir that reads every file of a
// directory. Both list one cluster per context and notice edits while they
// run.
//
//	src, err := kubeconfig.New() // as kubectl: $KUBECONFIG or ~/.kube/config
//	if err != nil { ... }
//	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{})
//	if err != nil { ... }
//	go syncer.Run(ctx)
//
// # What a cluster is
//
// Every context becomes a cluster of the same name; the current-context is
// the default (WithDefault chooses another). Relative paths are resolved
// against the file that holds them, as client-go does. The files that a
// context refers to for its certificate authority, client certificate and
// client key are read when the source is listed and their contents put into
// the config inline (CAData, CertData, KeyData), so that client-go starts no
// goroutine to reload them; the source watches them instead, and a changed
// certificate file makes a new config. A tokenFile stays a path: client-go
// re-reads it on use, so a rotated token needs no new client.
//
// A context that cannot be used (no server, an unknown cluster or user, a
// name defined twice in one file, an unreadable certificate file) is listed
// with its Err set to a *clusterregistry.FieldError naming the file and the
// field, such as "contexts[prod].cluster". Errors never quote a credential.
// The other contexts carry on.
//
// # Trust, names and limits
//
// New and NewDir read the operator's own files, so they trust them
// (trust.Trusted): exec and auth-provider plugins run, and
// files named by a context are read. Parse is for kubeconfigs that users
// supply, and applies trust.Untrusted: a context that asks
// for a plugin or a local file is listed with an error that names the
// setting (such as "users[admin].exec") and wraps trust.ErrRefused,
// before any file it names is opened; without a config, nothing can run.
// WithTrustPolicy changes either default.
//
// A cluster name must pass clusterregistry.ValidateName; the Syncer ignores
// other names. A context whose name does not (EKS names contexts
// "arn:aws:eks:REGION:ACCOUNT:cluster/NAME") is listed with an error at its
// context; WithRename(SanitizeName) maps such names to valid ones, or pass
// a function of your own.
//
// A file bigger than WithMaxSize (1 MiB) is not read, and counts as an
// unreadable file; more contexts than WithMaxClusters (10,000) fail List.
//
// # Edits
//
// Each file is checked every poll interval (WithPollInterval, default
// 500ms): its size, modification time, inode and inode change time, and its
// content hash when those cannot be trusted (a time within 2s of the last
// read, or a system where the change time is unknown: then every check
// reads the file). The change time catches a same-size rewrite that sets
// the modification time back (cp -p, rsync -t, tar x), which size and time
// alone miss; a stat is much cheaper than hashing every file on every poll.
// The certificate and key files that the contexts name are checked the same
// way, against what List last read.
//
// A new content is used once it has stayed the same for the settle time
// (WithSettle, default 250ms), so that a file caught halfway through a
// non-atomic write is not taken for the new version. Renaming a completely
// written file into place is always safe, and is picked up just as fast.
// The first listing takes the files as they are. A file that keeps changing
// postpones its change for as long as it does: a content is used only once
// it has stayed unchanged for the settle time, so at most the settle time
// plus one poll interval after the last edit, and not before, however long
// the edits go on. A program that rewrites a kubeconfig every few hundred
// milliseconds should write it atomically (rename a complete file into
// place) or less often.
//
// A file that cannot be used any more (it no longer parses, is empty, or
// cannot be read) never removes clusters: the source keeps serving the
// file's last good content, and every cluster drawn from that file carries
// the error in its Err, so that the Syncer keeps the cluster's client and
// shows the error beside it. This keeps the other files' clusters updating,
// which failing the whole List would not. A file that has never been usable
// since the source started has no last good content. For a Source, List
// then fails, which makes the Syncer keep its whole last good state and
// report the error. For a Dir, whose files often come from several teams,
// the file is listed as one cluster named after the file, with the error
// and no config: the Syncer reports it, and the other files' changes go
// through.
//
// YAML and JSON differ on invalid UTF-8: a YAML kubeconfig with an invalid
// byte anywhere fails as a whole (an error at the field "kubeconfig", so a
// file that was good keeps its last good content), while a JSON kubeconfig
// decodes with each invalid byte replaced by U+FFFD, so its good contexts
// carry on (and a server name that held one fails only when a client
// connects).
//
// An empty file counts as half-written: to remove every cluster of a file,
// delete it (or, for the file given to WithPath, write a kubeconfig with no
// contexts). A deleted file's clusters go once the deletion has settled.
package kubeconfig
