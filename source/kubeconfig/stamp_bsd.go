//go:build darwin || freebsd || netbsd

package kubeconfig

import (
	"io/fs"
	"syscall"
)

// inodeStamp returns the device, inode and change time of fi; see the Linux
// version.
func inodeStamp(fi fs.FileInfo) (dev, ino uint64, ctime int64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), st.Ctimespec.Nano(), true
}
