package systemd

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a child process instead of
// running tests (Go os/exec/exec_test.go TestMain pattern).
const helperEnv = "FCGIVISOR_SYSTEMD_TEST_HELPER"

func TestMain(m *testing.M) {
	switch h := os.Getenv(helperEnv); h {
	case "":
		os.Exit(m.Run())
	case "activated":
		os.Exit(activatedHelper())
	case "fdlinks":
		os.Exit(fdLinksHelper())
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown helper\n", helperEnv, h)
		os.Exit(2)
	}
}

// activatedReport is what activatedHelper prints, as one JSON line, before
// serving its sockets.
type activatedReport struct {
	PID       int
	ListenPID string
	// WrongPID is the number of listeners Inherited returned for
	// LISTEN_PID = the parent's pid (must be 0).
	WrongPID int
	// CloexecBefore/After: FD_CLOEXEC on fds 3.. before and after Inherited.
	CloexecBefore []bool
	CloexecAfter  []bool
	Listeners     []reportedListener
	// GrandchildFDs: /proc/self/fd links of a process started after
	// Inherited, to show no passed socket leaks to it.
	GrandchildFDs []string
	Err           string
}

type reportedListener struct {
	Name, Network, Addr string
	FD                  int
}

// activatedHelper is a process started under socket activation: it reports
// what Inherited makes of its LISTEN_* variables, then accepts one
// connection on each listener and answers with the listener's name.
func activatedHelper() int {
	rep := activatedReport{PID: os.Getpid(), ListenPID: os.Getenv("LISTEN_PID")}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		rep.Err = err.Error()
		out.Encode(rep)
		return 1
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil {
		return fail(fmt.Errorf("LISTEN_FDS: %w", err))
	}
	cloexec := func() []bool {
		var fl []bool
		for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
			f, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			fl = append(fl, err == nil && f&unix.FD_CLOEXEC != 0)
		}
		return fl
	}
	rep.CloexecBefore = cloexec()
	wrong, err := Inherited(strconv.Itoa(os.Getppid()), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	if err != nil {
		return fail(fmt.Errorf("Inherited with the parent's pid: %w", err))
	}
	rep.WrongPID = len(wrong)
	ls, err := Inherited(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	if err != nil {
		return fail(err)
	}
	rep.CloexecAfter = cloexec()
	for i, l := range ls {
		rep.Listeners = append(rep.Listeners, reportedListener{Name: l.Name, Network: l.Network, Addr: l.Addr, FD: listenFDsStart + i})
	}
	gc := exec.Command(os.Args[0])
	gc.Env = append(os.Environ(), helperEnv+"=fdlinks")
	gcOut, err := gc.Output()
	if err != nil {
		return fail(fmt.Errorf("grandchild: %w", err))
	}
	rep.GrandchildFDs = strings.Fields(string(gcOut))
	if err := out.Encode(rep); err != nil {
		return 1
	}
	for _, l := range ls {
		nl, err := net.FileListener(l.File)
		if err != nil {
			fmt.Fprintf(os.Stderr, "listener %s: %v\n", l.Name, err)
			return 1
		}
		nl.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(10 * time.Second))
		c, err := nl.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "accept on %s: %v\n", l.Name, err)
			return 1
		}
		fmt.Fprintln(c, l.Name)
		c.Close()
		nl.Close()
		l.File.Close()
	}
	return 0
}

// fdLinksHelper prints where each of its open fds points.
func fdLinksHelper() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, e := range ents {
		if link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
			fmt.Println(link)
		}
	}
	return 0
}

// shortDir returns a new directory with a path short enough for Unix
// socket names (108 bytes), removed at the end of the test.
func shortDir(t *testing.T) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	d, err := os.MkdirTemp(base, "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// socketInode returns "socket:[inode]", the /proc/PID/fd link of f's socket.
func socketInode(t *testing.T, f *os.File) string {
	t.Helper()
	// Stat, not Fd: Fd would make the shared socket blocking.
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("socket:[%d]", fi.Sys().(*syscall.Stat_t).Ino)
}

// fileOf returns a dup of a listener's or connection's socket.
func fileOf(t *testing.T, c interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// openFDs counts this process's open fds.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
