package kubeconfig

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/kcfg"
	"github.com/clusterregistry/clusterregistry/source/internal/safefile"
)

// racyWindow bounds the timestamp granularity of file systems. A file whose
// modification time is this close to our last read of it may have changed
// again within the same timestamp, so its size and time prove nothing and
// its content is compared instead (git's "racily clean" entries).
const racyWindow = 2 * time.Second

// content is what one look at a file found.
type content struct {
	key     string // equal keys, equal content
	data    []byte
	missing bool
	readErr error
}

// tracked follows one file: what was last seen on disk, the content in use,
// and a newer content that waits to settle. It belongs to the poll that holds
// its poller's mu.
type tracked struct {
	path     string
	required bool  // a missing file is an error rather than an empty one
	maxSize  int64 // a bigger file is not read

	// The last look at the disk.
	statOK bool
	stamp  stamp
	readAt time.Time // wall time of the read, to compare with the stamp's times
	seen   content

	// The content in use.
	accepted    bool   // accept has run at least once
	acceptedKey string // key of the content in use
	good        *kcfg.File
	err         error // why the content in use is unusable; nil if it is good

	// A different content, waiting to settle.
	pending      bool
	pendingKey   string
	pendingSince time.Time
}

// A stamp is what a stat says of a file: equal stamps, unchanged file,
// unless a time is too recent to trust (racyWindow). Size and modification
// time alone are not enough: cp -p, rsync -t and tar x rewrite a file with
// its old time. The inode and its change time are, where inodeStamp knows
// them; elsewhere (ok false) every look reads the file and hashes it. A stat
// costs far less than reading and hashing every file of a Dir every poll.
type stamp struct {
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
	dev, ino     uint64
	ok           bool // inodeStamp knew dev, ino and ctime
}

func stampOf(fi fs.FileInfo) stamp {
	s := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	s.dev, s.ino, s.ctime, s.ok = inodeStamp(fi)
	return s
}

// trusted reports whether s, equal to the stamp of the last read at readAt,
// shows the file unchanged: its times are older than the racy window.
func (s stamp) trusted(readAt time.Time) bool {
	limit := readAt.Add(-racyWindow).UnixNano()
	return s.ok && s.mtime < limit && s.ctime < limit
}

// look checks the file, and reads it with read unless its stamp shows it
// unchanged.
func (t *tracked) look(read func(path string, limit int64) ([]byte, error)) content {
	fi, err := os.Stat(t.path)
	switch {
	case err != nil:
	case fi.IsDir():
		err = fmt.Errorf("%s is a directory", t.path)
	case !fi.Mode().IsRegular():
		// A pipe or a device: a read could block for ever, and every later
		// poll with it.
		err = fmt.Errorf("%s is not a regular file", t.path)
	case fi.Size() > t.maxSize:
		err = fmt.Errorf("%s: %d bytes: %w", t.path, fi.Size(), kcfg.TooBig(t.maxSize))
	}
	if err != nil {
		t.statOK = false
		return t.fail(err)
	}
	st := stampOf(fi)
	if t.statOK && st == t.stamp && st.trusted(t.readAt) {
		return t.seen
	}
	// Wall time, as the file system's timestamps; it decides only whether
	// to trust them next time, never how long anything waits.
	readAt := time.Now()
	data, err := read(t.path, t.maxSize)
	if err != nil {
		t.statOK = false
		return t.fail(err)
	}
	sum := sha256.Sum256(data)
	t.statOK, t.stamp, t.readAt = true, st, readAt
	t.seen = content{key: "data:" + string(sum[:]), data: data}
	return t.seen
}

// readFile reads the regular file at path, of at most limit bytes. The limit
// holds for a file that grew after its size was checked; a path swapped for a
// named pipe or a device after that check is refused without blocking.
func readFile(path string, limit int64) ([]byte, error) {
	data, err := safefile.Read(path, limit)
	var tooBig *safefile.TooBigError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("%s: %w", path, kcfg.TooBig(limit))
	}
	return data, err
}

func (t *tracked) fail(err error) content {
	if errors.Is(err, fs.ErrNotExist) {
		t.seen = content{key: "missing", missing: true}
	} else {
		t.seen = content{key: "error:" + err.Error(), readErr: err}
	}
	return t.seen
}

// observe looks at the file and decides whether its content is now the one
// in use: at once the first time (first is set) or when o.settle is zero,
// otherwise once the same new content has been seen for o.settle. It reports
// whether the content in use changed.
func (t *tracked) observe(now time.Time, first bool, o *options) bool {
	c := t.look(o.readFile)
	if t.accepted && c.key == t.acceptedKey {
		t.pending = false
		return false
	}
	// A file that was missing from the start has nothing to protect.
	if !first && o.settle > 0 && (t.accepted || !c.missing) {
		if !t.pending || t.pendingKey != c.key {
			t.pending, t.pendingKey, t.pendingSince = true, c.key, now
			return false
		}
		if now.Sub(t.pendingSince) < o.settle {
			return false
		}
	}
	t.pending = false
	t.accept(c, o.decoder(t.path))
	return true
}

// accept makes c the content in use. Content that cannot be used keeps the
// last good content and records why.
func (t *tracked) accept(c content, decode func([]byte) (*kcfg.File, error)) {
	t.accepted, t.acceptedKey = true, c.key
	fileErr := func(field string, err error) error {
		return &clusterregistry.FieldError{Location: t.path, Field: field, Err: err}
	}
	switch {
	case c.missing && !t.required:
		t.good, t.err = nil, nil
	case c.missing || c.readErr != nil:
		err := c.readErr
		if err == nil {
			err = fs.ErrNotExist
		}
		t.err = fileErr("file", err)
	case kcfg.IsBlank(c.data):
		if t.good == nil {
			t.err = nil // nothing yet, as client-go reads an empty file
		} else {
			t.err = fileErr("kubeconfig", errors.New("file is empty"))
		}
	default:
		f, err := decode(c.data)
		if err != nil {
			t.err = err
		} else {
			t.good, t.err = f, nil
		}
	}
}

// current returns the File to list for t: the content in use, or its last
// good content marked stale. It returns an error only if the file has an
// error and no last good content.
func (t *tracked) current() (*kcfg.File, error) {
	switch {
	case t.err == nil:
		return t.good, nil
	case t.good == nil:
		return nil, t.err
	}
	stale := t.err
	var fe *clusterregistry.FieldError
	if errors.As(t.err, &fe) {
		stale = &clusterregistry.FieldError{
			Location: fe.Location,
			Field:    fe.Field,
			Err:      fmt.Errorf("%w; keeping the file's last good content", fe.Err),
		}
	}
	return t.good.WithStale(stale), nil
}

// poller is the part that Source and Dir share: the tracked files, the files
// they refer to, the view that List reads, and the watch loop.
//
// A poll holds mu, and no other lock, while it looks at the disk (stat,
// read, decode), then publishes a view of what it found. Polls run one at a
// time, so none sees another's bookkeeping half done, and List reads only
// whole views. Once a view exists, no List waits for a poll: a List that
// finds one running returns the view of the poll before it (see list). The
// watch's poll, though, waits for a List's poll to end.
type poller struct {
	opts options

	// mu serializes polls and protects the fields below it. A poll holds it
	// while it stats, reads and decodes files, which for a Dir of many big
	// files takes a while: nothing that serves a caller may wait for it once
	// a view has been published.
	mu      sync.Mutex
	files   map[string]*tracked
	refs    map[string]*tracked // files that the kubeconfigs refer to
	started bool                // a refresh has run: later contents settle
	version uint64              // counts changes of the contents in use, whoever saw them
	listErr error               // why the paths to poll could not be listed (a Dir's directory)

	// view is what the latest poll found. Polls store it, with mu held;
	// it is read with no lock, and never changed once stored.
	view atomic.Pointer[view]
}

// A view is what one poll found: the error that kept it from listing the
// paths, or the File (or error) that each tracked path gives List. It is
// immutable.
type view struct {
	version uint64 // the poller's version when it was made
	err     error
	files   map[string]listed // paths with nothing to list are left out
}

// listed is what one path gives List: what tracked.current returns.
type listed struct {
	file *kcfg.File
	err  error
}

func newPoller(o options) poller {
	return poller{opts: o, files: map[string]*tracked{}, refs: map[string]*tracked{}}
}

// list runs a poll, refreshLocked with p.mu held, and returns its view. If
// another poll is running, it returns the view of the latest finished poll
// instead, at once: a List must not wait for a directory's worth of reads,
// and whatever the running poll finds it counts in p.version, which the
// watch reports. Only a List that comes before any view waits.
func (p *poller) list(refreshLocked func()) *view {
	if !p.mu.TryLock() {
		if v := p.view.Load(); v != nil {
			return v
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	refreshLocked()
	p.refsLocked()
	return p.publishLocked()
}

// publishLocked stores and returns the view of the tracked files, reusing
// the stored one when no content in use changed since. p.mu must be held.
func (p *poller) publishLocked() *view {
	// Every change of what current returns comes with a new p.version.
	if v := p.view.Load(); v != nil && v.version == p.version && v.err == nil && p.listErr == nil {
		return v
	}
	v := &view{version: p.version, err: p.listErr}
	if v.err == nil {
		v.files = make(map[string]listed, len(p.files))
		for path, t := range p.files {
			if f, err := t.current(); f != nil || err != nil {
				v.files[path] = listed{file: f, err: err}
			}
		}
	}
	p.view.Store(v)
	return v
}

// refreshLocked observes the files at paths (and drops those no longer
// wanted once they are gone), counting a change of any content in use in
// p.version. p.mu must be held.
func (p *poller) refreshLocked(paths []string, required bool) {
	now := p.opts.clock.Now()
	first := !p.started
	p.started = true
	changed := false
	for _, path := range paths {
		t, ok := p.files[path]
		if !ok {
			t = &tracked{path: path, required: required, maxSize: p.opts.maxSize}
			p.files[path] = t
		}
		if t.observe(now, first, &p.opts) {
			changed = true
		}
	}
	if len(p.files) > len(paths) {
		want := make(map[string]bool, len(paths))
		for _, path := range paths {
			want[path] = true
		}
		for path, t := range p.files {
			if want[path] {
				continue
			}
			// A file that left the directory listing goes once its absence
			// has settled, as any other change.
			if t.observe(now, first, &p.opts) {
				changed = true
			}
			if t.accepted && t.seen.missing && t.good == nil && t.err == nil {
				delete(p.files, path)
			}
		}
	}
	if changed {
		p.version++
	}
}

// refsLocked looks at the files that the current contents refer to, counting
// a change since the last look in p.version. p.mu must be held.
//
// Every poll runs it, a List's too, right before it publishes the view that
// List resolves, and so reads the referred files from: what a watch compares
// with is what Lists read, or older. A file first looked at here is
// recorded without a change, since no List has read it before. A file that
// changes between this look and List's read makes one more change call,
// never one fewer.
func (p *poller) refsLocked() {
	want := map[string]bool{}
	for _, t := range p.files {
		if t.good != nil {
			for _, r := range t.good.Refs() {
				want[r] = true
			}
		}
	}
	changed := false
	for path := range want {
		t, ok := p.refs[path]
		if !ok {
			t = &tracked{path: path, maxSize: p.opts.maxSize}
			p.refs[path] = t
			t.look(p.opts.readFile)
			continue
		}
		before := t.seen.key
		if t.look(p.opts.readFile).key != before {
			changed = true
		}
	}
	for path := range p.refs {
		if !want[path] {
			delete(p.refs, path)
		}
	}
	if changed {
		p.version++
	}
}

// watch calls changed once, then polls an interval after the end of each
// poll until ctx is done, calling changed when the contents in use changed
// since the previous poll, whether this poll or a List in between noticed
// it. refreshLocked runs with p.mu held.
func (p *poller) watch(ctx context.Context, changed func(), refreshLocked func()) error {
	// A timer set after each poll rather than a ticker: a poll that takes
	// longer than the interval is not followed at once by the next one.
	t := p.opts.clock.NewTimer(p.opts.pollInterval)
	defer t.Stop()
	p.mu.Lock()
	seen := p.version
	p.mu.Unlock()
	// As a Watcher must: what changed before seen was taken is for the next
	// List to find, and nothing would tell the caller about it.
	changed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		p.mu.Lock()
		refreshLocked()
		p.refsLocked()
		v := p.publishLocked().version
		p.mu.Unlock()
		// Outside the lock: changed is the caller's code.
		if v != seen {
			seen = v
			changed()
		}
		t.Reset(p.opts.pollInterval)
	}
}
