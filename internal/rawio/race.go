//go:build race

package rawio

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Under the race detector: the syscall package's calls, which tell the
// detector that the kernel wrote (read) the buffer, and order a write to
// a socket before the read of it at the other end, as net.Conn's do.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

func sysWritev(fd uintptr, bufs net.Buffers) (int, syscall.Errno) {
	n, err := unix.Writev(int(fd), bufs)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO
	}
	return e
}
