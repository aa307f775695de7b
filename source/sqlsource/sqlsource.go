// Package sqlsource provides a cluster source that reads a table of
// kubeconfigs through database/sql: SQLite, MySQL, PostgreSQL or any other
// database with a driver. The package imports no driver; the program does.
//
//	db, err := sql.Open("sqlite", "clusters.db") // with a driver of your choice
//	if err != nil { ... }
//	src, err := sqlsource.New(db, sqlsource.WithQuery(
//		`SELECT name, config AS kubeconfig, is_default, enable AS enabled FROM clusters`))
//	if err != nil { ... }
//	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{},
//		clusterregistry.WithInterval(10*time.Second))
//
// The query returns one row per cluster. Its columns are found by name (case
// does not matter; rename them with AS):
//
//   - name: the cluster's name. Required.
//   - kubeconfig: a kubeconfig (text or bytes); its current-context is used,
//     or its only context. Required.
//   - is_default (or default): whether the cluster is the default. NULL is
//     false.
//   - enabled: rows that are false are skipped. NULL, or no such column,
//     is true.
//   - labels: a JSON object of strings, the cluster's labels.
//   - revision: a version of the row (a counter, an updated-at time); when
//     set, the cluster is rebuilt exactly when it changes.
//
// A row that cannot be used (an empty or repeated name, a malformed
// kubeconfig, a value of the wrong type) is listed under its name with Err
// set to a *clusterregistry.FieldError whose Location is the row ("row 3",
// counting from 1) and whose Field is the column; the error never quotes a
// kubeconfig or a credential. The other rows carry on. A query that fails
// fails List, and the Syncer keeps its last good state; where the database's
// error quotes one of the query's text arguments, it is replaced by $1, $2...
// (see WithQuery).
//
// A database does not announce changes. By default the Syncer's interval
// (clusterregistry.WithInterval) says how soon a changed row takes effect.
// WithChangeQuery makes the Source watch for changes by polling a cheap query
// instead, such as
//
//	src, err := sqlsource.New(db, sqlsource.WithQuery(query),
//		sqlsource.WithChangeQuery(`SELECT count(*), max(updated_at) FROM clusters`))
//
// whose one row changes whenever the listed rows may have changed: Watch runs
// it a poll interval (WithPollInterval, 1s) after each run ends and has the
// Syncer list the table when its result differs, so a change takes effect
// within about a second and the Syncer's interval can be long. A change query
// that fails has the Syncer list once (so that it reports the database's
// error) and once more when the query works again; WithLogger says where its
// error goes. Without a change query, Watch returns at once: there is nothing
// to watch, and the Syncer lists on its interval.
//
// SQLite: the Source reads while another program writes the file. In
// SQLite's default rollback-journal mode a writer's lock makes the read fail
// at once with SQLITE_BUSY ("database is locked"), and a reader can make the
// writer fail the same way; the List then fails (the Syncer keeps its last
// good state) or the other program's write does. Give both connections a
// busy timeout, so that they wait for the lock instead (PRAGMA busy_timeout,
// in the DSN of modernc.org/sqlite "file:clusters.db?_pragma=busy_timeout(5000)";
// mattn/go-sqlite3: "?_busy_timeout=5000"), and preferably put the database
// in WAL mode (PRAGMA journal_mode=WAL, which persists in the file), in which
// readers and a writer do not block one another.
//
// A List decodes only the kubeconfigs that the previous one did not list,
// found by a SHA-256 of their bytes after WithTransform (and those that
// failed or name local files), so a List of many unchanged rows costs little
// more than the query.
//
// Rows are untrusted by default (trust.Untrusted; see
// WithTrustPolicy): a kubeconfig that asks for an exec or auth-provider
// plugin, or refers to a file on the service's host, is listed with an error
// that names the setting and wraps trust.ErrRefused, and nothing it
// names is read or run. WithTransform decodes kubeconfigs that the table
// keeps encrypted.
//
// Limits: a kubeconfig (before and after WithTransform) or labels value of
// more than WithMaxSize bytes makes its row's error; more than
// WithMaxClusters listed rows fail List, which stops reading rows there. A
// name (after WithRename, if set) must pass clusterregistry.ValidateName, or
// the row is listed with an error and the Syncer ignores it.
package sqlsource

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/dedup"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/trust"
)

// Defaults of the options.
const (
	// DefaultQuery is the query of a Source made without WithQuery.
	DefaultQuery = "SELECT name, kubeconfig, is_default, enabled FROM clusters"
	// DefaultMaxSize bounds a row's kubeconfig and labels: 1 MiB.
	DefaultMaxSize = kcfg.DefaultMaxSize
	// DefaultMaxClusters bounds the rows one List may list.
	DefaultMaxClusters = kcfg.DefaultMaxClusters
	// DefaultPollInterval is how long Watch waits after one run of the
	// change query before the next.
	DefaultPollInterval = time.Second
)

// An Option configures a Source.
type Option interface {
	apply(*options)
}

type options struct {
	query       string
	args        []any
	policy      trust.Policy
	rename      func(string) string
	maxSize     int64
	maxClusters int
	transform   func([]byte) ([]byte, error)

	changeQuery   *string // nil: no change query, Watch returns at once
	changeArgs    []any
	pollInterval  time.Duration
	changeTimeout time.Duration // set by New from pollInterval; tests shorten it
	clock         clock.WithTicker
	logger        logr.Logger
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithQuery sets the query and its arguments. Where the database's error
// quotes an argument that is a string or []byte (or an sql.NamedArg of one)
// of 4 bytes or more, List's error has $1 for the first argument, $2 for the
// second, and so on, instead; a shorter argument is left as the driver quotes
// it, so do not pass a secret that short. Default: DefaultQuery.
func WithQuery(query string, args ...any) Option {
	return optionFunc(func(o *options) { o.query, o.args = query, slices.Clone(args) })
}

// WithChangeQuery sets a query, and its arguments, that Watch runs a poll
// interval (WithPollInterval) after each run ends to notice changes: a cheap
// query that returns
// one row whose values change whenever the rows of the main query may have,
// such as `SELECT count(*), max(updated_at) FROM clusters` (a DELETE changes
// the count, an INSERT or UPDATE the time, if every writer sets it) or the
// value of a revision counter that every writer, or a trigger, increments.
// The values are compared as the driver returns them ([]byte as text, NULL
// as itself); a query that returns no row returns a result of its own, and
// one that returns more than one row fails. Its errors hide its arguments as
// WithQuery's do: a string or []byte argument of 4 bytes or more that the
// database's error quotes is replaced by $N, N being its position from 1.
// Default: none, and Watch returns at once without calling changed.
func WithChangeQuery(query string, args ...any) Option {
	return optionFunc(func(o *options) { o.changeQuery, o.changeArgs = &query, slices.Clone(args) })
}

// WithPollInterval sets how long Watch waits after one run of the change
// query ends before the next one starts. It also bounds a run: one that takes
// longer than the poll interval, or a second if that is more, is cancelled
// and counts as failing. A very small interval has the database run the
// change query almost without pause, as each run starts as soon as the one
// before it ends. Without WithChangeQuery it has no effect. Default:
// DefaultPollInterval.
func WithPollInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.pollInterval = d })
}

// WithClock sets the clock of the poll interval. Tests pass a fake clock
// (k8s.io/utils/clock/testing). The deadline of one run of the change query
// follows the wall clock. Default: the real clock.
func WithClock(c clock.WithTicker) Option {
	return optionFunc(func(o *options) { o.clock = c })
}

// WithLogger sets where Watch reports its change query's failures: an error
// when the query starts failing, with the database's error (its arguments
// hidden as WithChangeQuery says), and an info line when it works again.
// Default: logr.Discard().
func WithLogger(l logr.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithTrustPolicy sets which settings a row's kubeconfig may use: exec and
// auth-provider plugins, references to files on the service's host,
// insecure-skip-tls-verify and proxy-url. A row that uses a refused setting
// is listed with an error that names the setting and wraps
// trust.ErrRefused; nothing it names is read or run. Default:
// trust.Untrusted, which refuses plugins and local files.
func WithTrustPolicy(p trust.Policy) Option {
	return optionFunc(func(o *options) { o.policy = p })
}

// WithRename sets a function that maps the name column to the cluster's
// name, such as kubeconfig.SanitizeName. The result must pass
// clusterregistry.ValidateName. Default: none.
func WithRename(rename func(name string) string) Option {
	return optionFunc(func(o *options) { o.rename = rename })
}

// WithMaxSize bounds a row's kubeconfig (before and after WithTransform) and
// labels, in bytes; a bigger value is the row's error and is not decoded.
// Default: DefaultMaxSize.
func WithMaxSize(bytes int64) Option {
	return optionFunc(func(o *options) { o.maxSize = bytes })
}

// WithMaxClusters bounds the rows one List may list (rows that are not
// enabled do not count). List fails at the first row past it, without
// reading the rest, and the Syncer keeps its last good state. Default:
// DefaultMaxClusters.
func WithMaxClusters(n int) Option {
	return optionFunc(func(o *options) { o.maxClusters = n })
}

// WithTransform sets a function that turns the kubeconfig column into a
// kubeconfig, such as a decryption. Its error becomes the row's error, so it
// must not quote its input.
func WithTransform(f func(kubeconfig []byte) ([]byte, error)) Option {
	return optionFunc(func(o *options) { o.transform = f })
}

// A Source lists the clusters of a query's rows, and is a
// clusterregistry.Watcher that polls its change query (WithChangeQuery). It
// is safe for concurrent use, as *sql.DB is.
type Source struct {
	db   *sql.DB
	opts options
	// memo keeps the clusters of the latest List's kubeconfigs, so that a
	// List decodes only the kubeconfigs that changed.
	memo kcfg.Memo
}

var _ clusterregistry.Watcher = (*Source)(nil)

// New returns a Source that runs its query on db. It validates the options
// and does not touch the database.
func New(db *sql.DB, opts ...Option) (*Source, error) {
	o := options{
		query:        DefaultQuery,
		policy:       trust.Untrusted,
		maxSize:      DefaultMaxSize,
		maxClusters:  DefaultMaxClusters,
		pollInterval: DefaultPollInterval,
		clock:        clock.RealClock{},
		logger:       logr.Discard(),
	}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if db == nil {
		return nil, errors.New("sqlsource: db must not be nil")
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("sqlsource: %w", err)
	}
	o.changeTimeout = max(o.pollInterval, minChangeTimeout)
	return &Source{db: db, opts: o}, nil
}

// validate returns an error that names every option at fault, or nil.
func (o *options) validate() error {
	var msgs []string
	if strings.TrimSpace(o.query) == "" {
		msgs = append(msgs, "query must not be empty")
	}
	if o.changeQuery != nil && strings.TrimSpace(*o.changeQuery) == "" {
		msgs = append(msgs, "change query must not be empty")
	}
	if o.pollInterval <= 0 {
		msgs = append(msgs, fmt.Sprintf("poll interval must be positive, got %v", o.pollInterval))
	}
	if o.clock == nil {
		msgs = append(msgs, "clock must not be nil")
	}
	if err := kcfg.CheckLimits(o.maxSize, o.maxClusters); err != nil {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// columns says where each known column is in a row; -1 if absent.
type columns struct {
	name, kubeconfig, isDefault, enabled, labels, revision int
}

func findColumns(names []string) (columns, error) {
	c := columns{-1, -1, -1, -1, -1, -1}
	for i, n := range names {
		switch strings.ToLower(n) {
		case "name":
			c.name = i
		case "kubeconfig":
			c.kubeconfig = i
		case "is_default", "default":
			c.isDefault = i
		case "enabled":
			c.enabled = i
		case "labels":
			c.labels = i
		case "revision":
			c.revision = i
		}
	}
	var missing []string
	if c.name < 0 {
		missing = append(missing, "name")
	}
	if c.kubeconfig < 0 {
		missing = append(missing, "kubeconfig")
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("the query returns no %s column (columns: %s)", strings.Join(missing, " or "), strings.Join(names, ", "))
	}
	return c, nil
}

// List runs the query and returns one cluster per enabled row, sorted by
// name. It fails when the query does, returns no name or kubeconfig column,
// or returns more enabled rows than WithMaxClusters.
func (s *Source) List(ctx context.Context) ([]clusterregistry.Cluster, error) {
	rows, err := s.db.QueryContext(ctx, s.opts.query, s.opts.args...)
	if err != nil {
		return nil, fmt.Errorf("query clusters: %w", scrub(err, s.opts.args))
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("query clusters: %w", scrub(err, s.opts.args))
	}
	cols, err := findColumns(names)
	if err != nil {
		return nil, fmt.Errorf("query clusters: %w", err)
	}

	pass := s.memo.Pass()
	var defs []dedup.Def
	values := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range values {
		ptrs[i] = &values[i]
	}
	for n := 1; rows.Next(); n++ {
		clear(values)
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("query clusters: row %d: %w", n, scrub(err, s.opts.args))
		}
		c, enabled := s.cluster(n, cols, values, pass)
		if !enabled {
			continue
		}
		if len(defs) == s.opts.maxClusters {
			return nil, fmt.Errorf("query clusters: row %d: %w", n, kcfg.TooMany(s.opts.maxClusters))
		}
		defs = append(defs, dedup.Def{Cluster: c, Location: rowLocation(n), Field: "name"})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query clusters: %w", scrub(err, s.opts.args))
	}
	pass.Done()
	return dedup.Clusters(defs), nil
}

func rowLocation(n int) string { return "row " + strconv.Itoa(n) }

// cluster turns one row into a cluster, and says whether the row is enabled.
// It finds the kubeconfig's cluster in pass, or resolves it and keeps it
// there; pass may be nil.
func (s *Source) cluster(n int, cols columns, values []any, pass *kcfg.Pass) (clusterregistry.Cluster, bool) {
	loc := rowLocation(n)
	fieldErr := func(field string, err error) error {
		return &clusterregistry.FieldError{Location: loc, Field: field, Err: err}
	}
	name, nameErr := text(values[cols.name])
	c := clusterregistry.Cluster{Name: name}
	if cols.enabled >= 0 && values[cols.enabled] != nil {
		enabled, err := boolean(values[cols.enabled])
		if err != nil {
			c.Err = fieldErr("enabled", err)
			return c, true
		}
		if !enabled {
			return c, false
		}
	}
	var err error
	switch {
	case nameErr != nil:
		c.Err = fieldErr("name", nameErr)
		return c, true
	case name == "":
		c.Err = fieldErr("name", kcfg.ErrEmpty)
		return c, true
	}
	if s.opts.rename != nil {
		c.Name = s.opts.rename(name)
	}
	if err := clusterregistry.ValidateName(c.Name); err != nil {
		c.Err = fieldErr("name", kcfg.NameErr(c.Name, err))
		return c, true
	}
	if cols.isDefault >= 0 && values[cols.isDefault] != nil {
		if c.Default, err = boolean(values[cols.isDefault]); err != nil {
			c.Err = fieldErr("is_default", err)
			return c, true
		}
	}
	if cols.labels >= 0 && values[cols.labels] != nil {
		if c.Labels, err = labels(values[cols.labels], s.opts.maxSize); err != nil {
			c.Err = fieldErr("labels", err)
			return c, true
		}
	}
	if cols.revision >= 0 && values[cols.revision] != nil {
		if c.Revision, err = text(values[cols.revision]); err != nil {
			c.Err = fieldErr("revision", err)
			return c, true
		}
	}

	var data []byte
	switch v := values[cols.kubeconfig].(type) {
	case []byte:
		data = v
	case string:
		data = []byte(v)
	case nil:
	default:
		c.Err = fieldErr("kubeconfig", fmt.Errorf("a %T, not text", v))
		return c, true
	}
	if int64(len(data)) > s.opts.maxSize {
		c.Err = fieldErr("kubeconfig", fmt.Errorf("%d bytes: %w", len(data), kcfg.TooBig(s.opts.maxSize)))
		return c, true
	}
	if s.opts.transform != nil && len(data) > 0 {
		if data, err = s.opts.transform(data); err != nil {
			c.Err = fieldErr("kubeconfig", err)
			return c, true
		}
	}
	if kcfg.IsBlank(data) {
		c.Err = fieldErr("kubeconfig", kcfg.ErrEmpty)
		return c, true
	}
	r := pass.One(data, kcfg.Options{Location: loc, Field: "kubeconfig", Policy: s.opts.policy, MaxSize: s.opts.maxSize})
	c.Config, c.Err = r.Config, r.Err
	return c, true
}

// text converts a driver value to a string.
func text(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("a %T, not text", v)
}

// boolean converts a driver value to a bool: a bool, a number (0 is false),
// or text that strconv.ParseBool reads.
func boolean(v any) (bool, error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case int64:
		return v != 0, nil
	case float64:
		return v != 0, nil
	case string:
		return parseBool(v)
	case []byte:
		return parseBool(string(v))
	}
	return false, fmt.Errorf("a %T, not a boolean", v)
}

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return false, errors.New("not a boolean")
	}
	return b, nil
}

func labels(v any, maxSize int64) (map[string]string, error) {
	s, err := text(v)
	if err != nil {
		return nil, err
	}
	if int64(len(s)) > maxSize {
		return nil, fmt.Errorf("%d bytes: %w", len(s), kcfg.TooBig(maxSize))
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("not a JSON object of strings: %w", kcfg.Redact(err))
	}
	return m, nil
}
