package spawner

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// CGI is a one-shot CGI program (RFC 3875) that was started with pipes as
// its stdin, stdout and stderr. The caller owns the three pipe ends: it
// writes the request body to Stdin and closes it, reads the response from
// Stdout and the diagnostics from Stderr, and closes both once done.
//
// The pipe ends are non-blocking and registered with Go's poller, so Close
// or a deadline unblocks a pending Read or Write even while a forked
// grandchild still holds the other end.
type CGI struct {
	*Process
	Stdin  *os.File // write end of the program's fd 0
	Stdout *os.File // read end of its fd 1
	Stderr *os.File // read end of its fd 2
}

// StartCGI starts spec with fresh pipes as fds 0, 1 and 2; spec's own
// Stdin, Stdout and Stderr are ignored. The program is the leader of its
// own process group, so Process.SignalGroup reaches what it forks.
func (r *Reaper) StartCGI(spec Spec) (*CGI, error) {
	var ours, theirs [3]*os.File
	closeAll := func() {
		for i := range 3 {
			if ours[i] != nil {
				ours[i].Close()
			}
			if theirs[i] != nil {
				theirs[i].Close()
			}
		}
	}
	for i := range 3 {
		o, t, err := pipe(i != 0)
		if err != nil {
			closeAll()
			return nil, err
		}
		ours[i], theirs[i] = o, t
	}
	spec.Stdin, spec.Stdout, spec.Stderr = theirs[0], theirs[1], theirs[2]
	p, err := r.Start(spec)
	for _, f := range theirs {
		f.Close() // the child has its copies
	}
	if err != nil {
		for _, f := range ours {
			f.Close()
		}
		return nil, err
	}
	return &CGI{Process: p, Stdin: ours[0], Stdout: ours[1], Stderr: ours[2]}, nil
}

// pipe returns a pipe's two ends: ours, non-blocking and registered with
// Go's poller (deadlines and Close unblock it), and theirs, a plain
// blocking fd for the child, never registered (os.Pipe would register
// and unregister both ends: two epoll_ctl calls per end, per request).
// ourRead: we read (the child's stdout, stderr); else we write (stdin).
func pipe(ourRead bool) (ours, theirs *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	o, t := fds[1], fds[0]
	if ourRead {
		o, t = fds[0], fds[1]
	}
	if err := unix.SetNonblock(o, true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	// os.NewFile registers a non-blocking fd with the poller ("kind
	// non-blocking") and leaves a blocking one alone.
	return os.NewFile(uintptr(o), "|cgi"), os.NewFile(uintptr(t), "|cgi-child"), nil
}

// IsPermission reports whether a start error means the program may not be
// executed (EACCES, EPERM) rather than that it is broken or missing.
func IsPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
