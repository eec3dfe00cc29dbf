package spawner

import (
	"errors"
	"os"
	"syscall"
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
	var ends [6]*os.File // stdin r/w, stdout r/w, stderr r/w
	closeAll := func() {
		for _, f := range ends {
			if f != nil {
				f.Close()
			}
		}
	}
	for i := 0; i < len(ends); i += 2 {
		rd, wr, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, err
		}
		ends[i], ends[i+1] = rd, wr
	}
	spec.Stdin, spec.Stdout, spec.Stderr = ends[0], ends[3], ends[5]
	p, err := r.Start(spec)
	// The child has its copies; keep only our ends.
	ends[0].Close()
	ends[3].Close()
	ends[5].Close()
	if err != nil {
		ends[1].Close()
		ends[2].Close()
		ends[4].Close()
		return nil, err
	}
	return &CGI{Process: p, Stdin: ends[1], Stdout: ends[2], Stderr: ends[4]}, nil
}

// IsPermission reports whether a start error means the program may not be
// executed (EACCES, EPERM) rather than that it is broken or missing.
func IsPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
