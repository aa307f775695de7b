package trusttest

import (
	"sync"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// Logs records what a logger logs, so that a test can check what a source
// said, and that no credential is in it. The zero Logs is ready to use.
type Logs struct {
	mu    sync.Mutex
	lines []string
}

// Logger returns a logger whose lines (their key and value pairs, as funcr
// formats them) go to l.
func (l *Logs) Logger() logr.Logger {
	return funcr.New(func(_, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{})
}

// Lines returns a copy of the lines logged so far.
func (l *Logs) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
