//go:build linux

package kubeconfig

import (
	"io/fs"
	"syscall"
)

// inodeStamp returns the device, inode and change time of fi. A rewrite
// that keeps the size and sets the modification time back (cp -p, rsync
// -t, tar x) still moves the change time, which no user can set, or makes a
// new inode.
func inodeStamp(fi fs.FileInfo) (dev, ino uint64, ctime int64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	return uint64(st.Dev), st.Ino, st.Ctim.Nano(), true
}
