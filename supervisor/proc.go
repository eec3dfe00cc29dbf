package supervisor

// What the kernel tells about a worker: its resident set size (max_memory,
// status) from /proc/PID/statm, which each worker keeps open for its life,
// so that a reading is one pread, costs no path lookup on the request
// path, and can never be another process's after the pid is reused (once
// the process is gone a read fails); and its CPU time (each request's CPU
// seconds, issue 13) from its process CPU clock.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openProc opens pid's statm; nil when it cannot be (a test's scripted
// process has no /proc entry).
func openProc(pid int) *os.File {
	f, _ := os.Open("/proc/" + strconv.Itoa(pid) + "/statm")
	return f
}

// closeProc closes what openProc opened.
func (w *worker) closeProc() {
	if w.statm != nil {
		w.statm.Close()
	}
}

var errNoProc = errors.New("no /proc entry open")

// readProc reads f, a small /proc file, whole from its start.
func readProc(f *os.File, buf []byte) ([]byte, error) {
	if f == nil {
		return nil, errNoProc
	}
	// One pread: os.File.ReadAt would read again to fill buf, and a
	// /proc file answers a second read at its end with 0 bytes.
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Pread(int(fd), buf, 0)
		return true
	}); err != nil {
		return nil, err
	}
	if n > 0 {
		return buf[:n], nil
	}
	if rerr == nil {
		rerr = io.ErrUnexpectedEOF
	}
	return nil, rerr
}

// cpuNanos is the worker's CPU time so far, user and system, all its
// threads (not its children), in nanoseconds: one clock_gettime of its
// process CPU clock, as clock_getcpuclockid(3) names it, about 20 times
// cheaper than reading /proc/PID/stat and precise to the nanosecond
// where stat counts 10 ms ticks. Once the worker has been reaped its pid
// may be another process's: then it fails.
func (w *worker) cpuNanos() (int64, error) {
	select {
	case <-w.proc.Done():
		return 0, errReaped
	default:
	}
	pid := w.proc.Pid()
	if pid <= 0 {
		return 0, errReaped
	}
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED): ((~pid) << 3) | 2.
	clock := int32(^pid<<3 | 2)
	var ts unix.Timespec
	// A raw system call: it never blocks, and the scheduler's bookkeeping
	// around a plain one costs more than the call (internal/rawio).
	if _, _, e := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, e
	}
	return ts.Nano(), nil
}

var errReaped = errors.New("the worker has exited")

// rss is the worker's resident set size in bytes (statm's second field,
// in pages).
func (w *worker) rss() (int64, error) {
	var buf [128]byte
	b, err := readProc(w.statm, buf[:])
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("statm of %d: %q", w.proc.Pid(), b)
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// nanosToSeconds turns nanoseconds into seconds.
func nanosToSeconds(t int64) float64 { return float64(t) / 1e9 }
