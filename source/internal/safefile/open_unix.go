//go:build unix

package safefile

import (
	"os"
	"syscall"
)

// openNonblock opens path for reading with O_NONBLOCK: an open of a named pipe
// otherwise waits for a writer, which may never come.
func openNonblock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// setBlocking clears O_NONBLOCK from fh, a regular file, so that its reads
// are those of a file opened without it. Regular files ignore the flag on
// the systems we know of; this keeps it so on any other.
func setBlocking(fh *os.File) error {
	rc, err := fh.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fcntl", Path: fh.Name(), Err: serr}
	}
	return nil
}
