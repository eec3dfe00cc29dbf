package systemd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// freeFDs returns the first of n consecutive fd numbers that are not open.
// Tests hand sockets over on them, as systemd does on fds 3..., without
// touching the fds the Go runtime and the test binary use.
func freeFDs(t *testing.T, n int) int {
	t.Helper()
next:
	for base := 500; base < 5000; base += 50 {
		for fd := base; fd < base+n; fd++ {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
				continue next
			}
		}
		return base
	}
	t.Fatalf("no %d free consecutive fds", n)
	return 0
}

// handOver dups files onto consecutive free fds without close-on-exec, as
// systemd passes them, and returns the first. The caller owns the new fds.
func handOver(t *testing.T, files ...*os.File) int {
	t.Helper()
	start := freeFDs(t, len(files))
	for i, f := range files {
		rc, err := f.SyscallConn() // not Fd: it would make a socket blocking
		if err != nil {
			t.Fatal(err)
		}
		var derr error
		if err := rc.Control(func(fd uintptr) { derr = unix.Dup3(int(fd), start+i, 0) }); err != nil || derr != nil {
			t.Fatal(err, derr)
		}
	}
	return start
}

// closeRaw closes fds nobody wrapped in an *os.File.
func closeRaw(t *testing.T, start, n int) {
	t.Cleanup(func() {
		for fd := start; fd < start+n; fd++ {
			unix.Close(fd)
		}
	})
}

// closeListeners closes the files Inherited made.
func closeListeners(t *testing.T, ls []Listener) {
	t.Cleanup(func() {
		for _, l := range ls {
			l.File.Close()
		}
	})
}

func cloexec(t *testing.T, fd int) bool {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatalf("fd %d: %v", fd, err)
	}
	return fl&unix.FD_CLOEXEC != 0
}

func mustListen(t *testing.T, network, address string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

var self = strconv.Itoa(os.Getpid())

// TestInherited: a TCP and a Unix listener handed over come back with
// their names, networks and addresses, as the very same sockets, and
// close-on-exec.
func TestInherited(t *testing.T) {
	tcpL := mustListen(t, "tcp", "127.0.0.1:0")
	unixPath := filepath.Join(shortDir(t), "php.sock")
	unixL := mustListen(t, "unix", unixPath)
	tf, uf := fileOf(t, tcpL.(*net.TCPListener)), fileOf(t, unixL.(*net.UnixListener))
	start := handOver(t, tf, uf)
	for fd := start; fd < start+2; fd++ {
		if cloexec(t, fd) {
			t.Fatalf("fd %d is close-on-exec before Inherited; the test cannot tell", fd)
		}
	}

	ls, err := inherited(self, "2", "http:php", os.Getpid(), start)
	if err != nil {
		closeRaw(t, start, 2)
		t.Fatal(err)
	}
	closeListeners(t, ls)
	want := []Listener{
		{Name: "http", Network: "tcp", Addr: tcpL.Addr().String()},
		{Name: "php", Network: "unix", Addr: unixPath},
	}
	if len(ls) != len(want) {
		t.Fatalf("got %d listeners, want %d", len(ls), len(want))
	}
	for i, l := range ls {
		if l.Name != want[i].Name || l.Network != want[i].Network || l.Addr != want[i].Addr {
			t.Errorf("listener %d = %q %q %q, want %q %q %q", i, l.Name, l.Network, l.Addr, want[i].Name, want[i].Network, want[i].Addr)
		}
		if !cloexec(t, start+i) {
			t.Errorf("fd %d not close-on-exec after Inherited: workers would inherit it", start+i)
		}
		if got, orig := socketInode(t, l.File), socketInode(t, []*os.File{tf, uf}[i]); got != orig {
			t.Errorf("listener %d is %s, want the handed-over %s", i, got, orig)
		}
	}
	// The file serves: a connection to the address is accepted through it.
	nl, err := net.FileListener(ls[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	c, err := net.Dial("tcp", ls[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nl.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	ac, err := nl.Accept()
	if err != nil {
		t.Fatalf("accept through the inherited file: %v", err)
	}
	ac.Close()
}

// TestInheritedNotForUs: variables unset, zero fds, or another process's
// LISTEN_PID give no listeners and leave the fds alone.
func TestInheritedNotForUs(t *testing.T) {
	l := mustListen(t, "tcp", "127.0.0.1:0")
	start := handOver(t, fileOf(t, l.(*net.TCPListener)))
	closeRaw(t, start, 1)
	for _, tc := range []struct{ pid, fds string }{
		{"", "1"},
		{self, ""},
		{strconv.Itoa(os.Getppid()), "1"}, // a parent leaked its LISTEN_*
		{"1", "1"},
		{self, "0"},
	} {
		ls, err := inherited(tc.pid, tc.fds, "http", os.Getpid(), start)
		if err != nil || ls != nil {
			closeListeners(t, ls)
			t.Errorf("LISTEN_PID=%q LISTEN_FDS=%q: got %d listeners, %v; want none, no error", tc.pid, tc.fds, len(ls), err)
		}
		if cloexec(t, start) {
			t.Fatalf("LISTEN_PID=%q LISTEN_FDS=%q: fd %d was made close-on-exec; it is not ours", tc.pid, tc.fds, start)
		}
	}
}

func TestInheritedErrors(t *testing.T) {
	for _, tc := range []struct{ pid, fds, want string }{
		{"abc", "1", "LISTEN_PID"},
		{"-1", "1", "LISTEN_PID"},
		{"0", "1", "LISTEN_PID"},
		{self, "x", "LISTEN_FDS"},
		{self, "-1", "LISTEN_FDS"},
		{self, "100000", "LISTEN_FDS"},
	} {
		// start is past every open fd: a bug that went on to the fds
		// would fail on them instead of wrapping someone else's.
		ls, err := inherited(tc.pid, tc.fds, "", os.Getpid(), freeFDs(t, 1))
		if err == nil || ls != nil || !strings.Contains(err.Error(), tc.want) {
			closeListeners(t, ls)
			t.Errorf("LISTEN_PID=%q LISTEN_FDS=%q: got %d listeners, error %v; want an error naming %s", tc.pid, tc.fds, len(ls), err, tc.want)
		}
	}

	// LISTEN_FDS=2 with only the first fd open: an error naming the
	// missing fd, and the open one is close-on-exec all the same.
	l := mustListen(t, "tcp", "127.0.0.1:0")
	start := handOver(t, fileOf(t, l.(*net.TCPListener)))
	closeRaw(t, start, 1)
	if _, err := unix.FcntlInt(uintptr(start+1), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("fd %d is open; the test needs it closed", start+1)
	}
	ls, err := inherited(self, "2", "", os.Getpid(), start)
	if err == nil || ls != nil || !strings.Contains(err.Error(), fmt.Sprintf("fd %d", start+1)) {
		closeListeners(t, ls)
		t.Errorf("LISTEN_FDS=2, fd %d closed: got %d listeners, error %v; want an error naming fd %d", start+1, len(ls), err, start+1)
	}
	if !cloexec(t, start) {
		t.Errorf("fd %d not close-on-exec after a failed Inherited", start)
	}
}

// TestInheritedNames: names come from LISTEN_FDNAMES in order; a missing
// or empty one is "unknown", as sd_listen_fds_with_names says; extra names
// are ignored.
func TestInheritedNames(t *testing.T) {
	l := mustListen(t, "tcp", "127.0.0.1:0")
	f := fileOf(t, l.(*net.TCPListener))
	for _, tc := range []struct {
		names string
		want  []string
	}{
		{"http:php:admin", []string{"http", "php", "admin"}},
		{"http::", []string{"http", "unknown", "unknown"}},
		{"", []string{"unknown", "unknown", "unknown"}},
		{"a", []string{"a", "unknown", "unknown"}},
		{"a:b:c:d", []string{"a", "b", "c"}},
		{"fcgivisor.socket:fcgivisor.socket:x", []string{"fcgivisor.socket", "fcgivisor.socket", "x"}},
	} {
		start := handOver(t, f, f, f)
		ls, err := inherited(self, "3", tc.names, os.Getpid(), start)
		if err != nil {
			closeRaw(t, start, 3)
			t.Fatal(err)
		}
		closeListeners(t, ls)
		var got []string
		for _, l := range ls {
			got = append(got, l.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("LISTEN_FDNAMES=%q: names %q, want %q", tc.names, got, tc.want)
		}
	}
}

// TestInheritedDescribes: each kind of fd gets the network and address
// main matches on; what cannot be served gets no network.
func TestInheritedDescribes(t *testing.T) {
	dir := shortDir(t)
	type kind struct {
		name          string
		f             *os.File
		network, addr string
	}
	var kinds []kind
	add := func(name string, f *os.File, network, addr string) {
		kinds = append(kinds, kind{name, f, network, addr})
	}

	l4 := mustListen(t, "tcp", "127.0.0.1:0")
	add("tcp4", fileOf(t, l4.(*net.TCPListener)), "tcp", l4.Addr().String())

	if l6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		t.Cleanup(func() { l6.Close() })
		add("tcp6", fileOf(t, l6.(*net.TCPListener)), "tcp", l6.Addr().String())
	} else {
		t.Logf("no IPv6 loopback (%v): not testing an IPv6 socket", err)
	}
	if lw, err := net.Listen("tcp", ":0"); err == nil {
		t.Cleanup(func() { lw.Close() })
		port := lw.Addr().(*net.TCPAddr).Port
		want := "0.0.0.0:" + strconv.Itoa(port)
		if lw.Addr().(*net.TCPAddr).IP.To4() == nil {
			want = "[::]:" + strconv.Itoa(port)
		}
		add("wildcard", fileOf(t, lw.(*net.TCPListener)), "tcp", want)
	}

	abstract := fmt.Sprintf("@fcgivisor-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	la := mustListen(t, "unix", abstract)
	add("abstract", fileOf(t, la.(*net.UnixListener)), "unix", abstract)

	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	add("udp", fileOf(t, u.(*net.UDPConn)), "udp", u.LocalAddr().String())

	gramPath := filepath.Join(dir, "gram")
	g, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: gramPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	add("unixgram", fileOf(t, g), "unixgram", gramPath)

	// Accept=yes: a connected socket, which no listener can serve.
	c, err := net.Dial("tcp", l4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	add("connected", fileOf(t, c.(*net.TCPConn)), "", c.LocalAddr().String())

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	add("pipe", r, "", "")

	files := make([]*os.File, len(kinds))
	for i, k := range kinds {
		files[i] = k.f
	}
	start := handOver(t, files...)
	ls, err := inherited(self, strconv.Itoa(len(files)), "", os.Getpid(), start)
	if err != nil {
		closeRaw(t, start, len(files))
		t.Fatal(err)
	}
	closeListeners(t, ls)
	for i, k := range kinds {
		if ls[i].Network != k.network || ls[i].Addr != k.addr {
			t.Errorf("%s: Network %q Addr %q, want %q %q", k.name, ls[i].Network, ls[i].Addr, k.network, k.addr)
		}
	}
}

// cleanEnv is our environment without anything systemd or a helper set.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LISTEN_") || k == "NOTIFY_SOCKET" || k == helperEnv || k == "GORACE" {
			continue
		}
		env = append(env, kv)
	}
	// A -race binary sleeps 1s at exit unless told not to.
	return append(env, raceNoExitSleep)
}

const raceNoExitSleep = "GORACE=atexit_sleep_ms=0"

// activated is a running activatedHelper and its report.
type activated struct {
	cmd        *exec.Cmd
	rep        activatedReport
	stderrDone chan struct{}
	mu         sync.Mutex
	stderr     strings.Builder
}

// startActivated starts cmd, which ends up running activatedHelper, calls
// ready with the lines cmd writes to stderr, and returns its report.
func startActivated(t *testing.T, cmd *exec.Cmd, ready func(stderr <-chan string)) *activated {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &activated{cmd: cmd, stderrDone: make(chan struct{})}
	lines := make(chan string, 1000)
	go func() {
		defer close(a.stderrDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.stderr.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-a.stderrDone
		cmd.Wait()
	})
	if ready != nil {
		ready(lines)
	}
	repc := make(chan error, 1)
	go func() { repc <- json.NewDecoder(stdout).Decode(&a.rep) }()
	select {
	case err := <-repc:
		if err != nil {
			t.Fatalf("reading the helper's report: %v\n%s", err, a.stderrText())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no report from the helper within 20s\n%s", a.stderrText())
	}
	if a.rep.Err != "" {
		t.Fatalf("helper: %s\n%s", a.rep.Err, a.stderrText())
	}
	return a
}

func (a *activated) stderrText() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

// check asserts what every activated helper must report, and that each
// listener serves its address: the helper answers a connection with the
// listener's name. conns holds connections already made, by address.
func (a *activated) check(t *testing.T, want []reportedListener, conns map[string]net.Conn) {
	t.Helper()
	rep := a.rep
	if rep.ListenPID != strconv.Itoa(rep.PID) {
		t.Errorf("helper pid %d got LISTEN_PID=%q; the test set it up wrong", rep.PID, rep.ListenPID)
	}
	if rep.WrongPID != 0 {
		t.Errorf("Inherited with the parent's pid as LISTEN_PID gave %d listeners, want 0", rep.WrongPID)
	}
	for i := range want {
		if i < len(rep.CloexecBefore) && rep.CloexecBefore[i] {
			t.Errorf("fd %d already close-on-exec before Inherited: the test cannot tell", listenFDsStart+i)
		}
		if i >= len(rep.CloexecAfter) || !rep.CloexecAfter[i] {
			t.Errorf("fd %d not close-on-exec after Inherited (flags %v)", listenFDsStart+i, rep.CloexecAfter)
		}
	}
	if !slices.Equal(rep.Listeners, want) {
		t.Errorf("listeners\n got %+v\nwant %+v", rep.Listeners, want)
	}
	for _, link := range rep.GrandchildFDs {
		if strings.HasPrefix(link, "socket:") {
			t.Errorf("a process started after Inherited has %s open: passed sockets leak to workers (its fds: %q)", link, rep.GrandchildFDs)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, l := range want {
		c, ok := conns[l.Addr]
		if !ok {
			var err error
			if c, err = net.DialTimeout(l.Network, l.Addr, 5*time.Second); err != nil {
				t.Fatalf("dial %s %s: %v", l.Network, l.Addr, err)
			}
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != l.Name+"\n" {
			t.Errorf("connection to %s %s: got %q, %v; want %q from the helper", l.Network, l.Addr, got, err, l.Name)
		}
	}
	<-a.stderrDone // the helper exits once it has answered
	if err := a.cmd.Wait(); err != nil {
		t.Errorf("helper: %v\n%s", err, a.stderrText())
	}
}

// TestInheritedChildProcess: the real protocol on fds 3 and 4, passed with
// os/exec ExtraFiles. LISTEN_PID must be the child's pid, unknown before it
// starts: sh exports its own pid ($$) and execs the test binary, which
// keeps that pid.
func TestInheritedChildProcess(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("no /bin/sh to set LISTEN_PID to the child's pid: %v", err)
	}
	tcpL := mustListen(t, "tcp", "127.0.0.1:0")
	unixPath := filepath.Join(shortDir(t), "php.sock")
	unixL := mustListen(t, "unix", unixPath)

	cmd := exec.Command("/bin/sh", "-c", `export LISTEN_PID=$$; exec "$0"`, os.Args[0])
	cmd.Env = append(cleanEnv(), helperEnv+"=activated", "LISTEN_FDS=2", "LISTEN_FDNAMES=http:php")
	cmd.ExtraFiles = []*os.File{fileOf(t, tcpL.(*net.TCPListener)), fileOf(t, unixL.(*net.UnixListener))}
	a := startActivated(t, cmd, nil)
	a.check(t, []reportedListener{
		{Name: "http", Network: "tcp", Addr: tcpL.Addr().String(), FD: 3},
		{Name: "php", Network: "unix", Addr: unixPath, FD: 4},
	}, nil)
}

// TestInheritedSystemdSocketActivate: systemd's own tool binds the
// sockets, sets LISTEN_* and execs the helper on the first connection.
func TestInheritedSystemdSocketActivate(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skipf("systemd-socket-activate not installed (Debian package systemd): %v", err)
	}
	unixPath := filepath.Join(shortDir(t), "php.sock")
	// A free port: systemd-socket-activate refuses port 0.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := l.Addr().String()
	l.Close()

	cmd := exec.Command(sa, "-l", unixPath, "-l", tcpAddr, "--fdname=php:http", "-E", helperEnv+"=activated", "-E", raceNoExitSleep, os.Args[0])
	cmd.Env = cleanEnv()
	var trigger net.Conn
	a := startActivated(t, cmd, func(stderr <-chan string) {
		// It prints "Listening on ADDR as FD." per socket, and execs the
		// helper on the first connection, which the helper accepts.
		listening := 0
		timeout := time.After(10 * time.Second)
		for listening < 2 {
			select {
			case l := <-stderr:
				if strings.HasPrefix(l, "Listening on ") {
					listening++
				}
			case <-timeout:
				t.Fatalf("systemd-socket-activate did not report listening within 10s")
			}
		}
		c, err := net.Dial("unix", unixPath)
		if err != nil {
			t.Fatal(err)
		}
		trigger = c
	})
	if a.rep.PID != cmd.Process.Pid {
		t.Errorf("helper pid %d, want %d (systemd-socket-activate execs in place)", a.rep.PID, cmd.Process.Pid)
	}
	a.check(t, []reportedListener{
		{Name: "php", Network: "unix", Addr: unixPath, FD: 3},
		{Name: "http", Network: "tcp", Addr: tcpAddr, FD: 4},
	}, map[string]net.Conn{unixPath: trigger})
}

func TestMatch(t *testing.T) {
	ls := []Listener{
		{Name: "a", Network: "tcp", Addr: "127.0.0.1:8080"},
		{Name: "b", Network: "tcp", Addr: "[::]:9000"},
		{Name: "c", Network: "tcp", Addr: "0.0.0.0:9001"},
		{Name: "d", Network: "tcp", Addr: "[::1]:8081"},
		{Name: "e", Network: "unix", Addr: "/run/x/a.sock"},
		{Name: "f", Network: "unix", Addr: "@abs"},
		{Name: "g", Network: "", Addr: "127.0.0.1:7000"}, // connected socket
		{Name: "h", Network: "udp", Addr: "127.0.0.1:8082"},
		{Name: "i", Network: "tcp", Addr: "[fe80::1%2]:8083"},
	}
	for _, tc := range []struct {
		network, address string
		want             string // Name of the match, "" for none
	}{
		{"tcp", "127.0.0.1:8080", "a"},
		{"tcp", "[::ffff:127.0.0.1]:8080", "a"},
		{"tcp", "127.0.0.2:8080", ""},
		{"tcp", "127.0.0.1:8081", ""},
		{"tcp", "127.0.0.1:08080", "a"},
		{"tcp", "localhost:8080", ""}, // not resolved
		{"tcp", "127.0.0.1:http", ""},
		{"tcp", "127.0.0.1", ""},
		{"tcp", ":9000", "b"},
		{"tcp", "0.0.0.0:9000", "b"},
		{"tcp", "[::]:9000", "b"},
		{"tcp", ":9001", "c"},
		{"tcp", "[::]:9001", "c"},
		{"tcp", "[::1]:8081", "d"},
		{"tcp", "[0:0:0:0:0:0:0:1]:8081", "d"},
		{"tcp", "127.0.0.1:8081", ""},
		{"tcp", "[fe80::1%2]:8083", "i"},
		{"tcp", "[fe80::1]:8083", ""},
		{"unix", "/run/x/a.sock", "e"},
		{"unix", "/run/x/../x//a.sock", "e"},
		{"unix", "/run/x/b.sock", ""},
		{"unix", "@abs", "f"},
		{"unix", "@abs2", ""},
		{"unix", "", ""},
		{"tcp", "127.0.0.1:7000", ""}, // no network: not servable
		{"udp", "127.0.0.1:8082", "h"},
		{"tcp", "127.0.0.1:8082", ""}, // a UDP socket serves no TCP
		{"unix", "127.0.0.1:8080", ""},
		{"tcp", "/run/x/a.sock", ""},
		{"", "127.0.0.1:8080", ""},
	} {
		l, ok := Match(ls, tc.network, tc.address)
		got := ""
		if ok {
			got = l.Name
			if i := slices.IndexFunc(ls, func(x Listener) bool { return x.Name == got }); l != &ls[i] {
				t.Errorf("Match(%q, %q) returned a copy, want a pointer into ls", tc.network, tc.address)
			}
		} else if l != nil {
			t.Errorf("Match(%q, %q) = %v, false; want nil", tc.network, tc.address, l)
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q) = %q, want %q", tc.network, tc.address, got, tc.want)
		}
	}
	if l, ok := Match(nil, "tcp", "127.0.0.1:8080"); ok || l != nil {
		t.Error("Match(nil) found something")
	}
}
