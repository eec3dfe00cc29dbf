//go:build !race

package rawio

import (
	"net"
	"syscall"
	"unsafe"
)

// maxIovecs bounds the buffers of one writev (the rest go in the next).
const maxIovecs = 16

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// sysWritev writes the first maxIovecs of bufs, which has no empty
// buffer first.
func sysWritev(fd uintptr, bufs net.Buffers) (int, syscall.Errno) {
	var iov [maxIovecs]syscall.Iovec
	k := 0
	for _, b := range bufs {
		if k == maxIovecs {
			break
		}
		if len(b) == 0 {
			continue
		}
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	return int(n), e
}
