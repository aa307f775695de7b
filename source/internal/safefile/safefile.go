// Package safefile reads the small local files that cluster descriptions
// name (kubeconfigs, certificates, keys, tokens) without ever blocking on
// one that is not a regular file: opening a named pipe for reading waits for
// a writer, which may never come, and a source that waited would stop
// noticing changes for good.
package safefile

import (
	"fmt"
	"io"
	"os"
)

// TooBigError is the error of a file larger than the limit of a Read.
type TooBigError struct {
	Path  string
	Limit int64
}

func (e *TooBigError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.Path, e.Limit)
}

// Read reads the regular file at path, of at most limit bytes. A path that
// names anything else (a named pipe, a device, a socket, a directory) is an
// error, and neither opening nor reading it blocks. A file larger than limit
// is a *TooBigError. Errors name the path and the cause, never the content.
func Read(path string, limit int64) ([]byte, error) {
	fh, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &TooBigError{Path: path, Limit: limit}
	}
	return data, nil
}

// Check checks, without reading it, that path is a regular file that can be
// opened for reading, so that another reader of it (client-go reading a
// token file) gets to its end. Like Read, it never blocks.
func Check(path string) error {
	fh, err := Open(path)
	if err != nil {
		return err
	}
	return fh.Close()
}

// Open opens the regular file at path for reading. It checks the path before
// opening it, so that nothing else is opened at all while the path stays put;
// its open does not wait for a named pipe's writer (openNonblock), in case
// the path was replaced in between; and it checks the file it opened.
func Open(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path)
	}
	fh, err := openNonblock(path)
	if err != nil {
		return nil, err
	}
	if fi, err = fh.Stat(); err == nil && !fi.Mode().IsRegular() {
		err = notRegular(path)
	}
	if err == nil {
		err = setBlocking(fh)
	}
	if err != nil {
		fh.Close()
		return nil, err
	}
	return fh, nil
}

func notRegular(path string) error { return fmt.Errorf("%s is not a regular file", path) }
