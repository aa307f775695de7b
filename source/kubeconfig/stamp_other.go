//go:build !linux && !darwin && !freebsd && !netbsd

package kubeconfig

import "io/fs"

// inodeStamp reports no change time where we do not know where to find it:
// then size and modification time prove nothing, and every look reads the
// file and compares its content hash.
func inodeStamp(fs.FileInfo) (dev, ino uint64, ctime int64, ok bool) { return 0, 0, 0, false }
