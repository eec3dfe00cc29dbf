package supervisor

// What /proc tells about a worker: its resident set size (max_memory,
// status) and its CPU time (each request's CPU seconds, issue 13). Each
// worker keeps /proc/PID/stat and /proc/PID/statm open for its life, so
// that a reading is one pread, costs no path lookup on the request path,
// and can never be another process's after the pid is reused: once the
// process is gone a read fails (ESRCH).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every architecture Go supports on Linux (the kernel's ABI value,
// whatever its internal HZ).
const clockTicks = 100

// openProc opens pid's stat and statm; nil for those that cannot be (a
// test's scripted process has no /proc entry).
func openProc(pid int) (stat, statm *os.File) {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	stat, _ = os.Open(dir + "stat")
	statm, _ = os.Open(dir + "statm")
	return stat, statm
}

// closeProc closes what openProc opened.
func (w *worker) closeProc() {
	if w.stat != nil {
		w.stat.Close()
	}
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
	n, err := f.ReadAt(buf, 0)
	if n > 0 {
		return buf[:n], nil
	}
	return nil, err
}

// cpuTicks is the worker's CPU time so far, user and system, in clock
// ticks (utime + stime: all its threads, not its children).
func (w *worker) cpuTicks() (int64, error) {
	var buf [512]byte
	b, err := readProc(w.stat, buf[:])
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses: fields are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of %d: no ')'", w.proc.Pid())
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat of %d: %d fields", w.proc.Pid(), len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime 15.
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat of %d: %w", w.proc.Pid(), err)
	}
	return utime + stime, nil
}

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

// ticksToSeconds turns clock ticks into seconds.
func ticksToSeconds(t int64) float64 { return float64(t) / clockTicks }
