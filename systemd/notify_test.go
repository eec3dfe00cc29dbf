package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// notifySocket is a test-owned stand-in for systemd's notify socket: it
// receives datagrams with the sender's credentials (SO_PASSCRED), as
// systemd does to enforce NotifyAccess=main.
type notifySocket struct {
	conn *net.UnixConn
	name string
}

func listenNotify(t *testing.T, name string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return &notifySocket{conn: conn, name: name}
}

// recv returns the next datagram and the pid of its sender.
func (s *notifySocket) recv(t *testing.T) (string, int32) {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8192)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("notify socket: control messages %v, %v", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	return string(buf[:n]), cred.Pid
}

func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// TestNotifierSendsInOrder: every message reaches the socket as one
// datagram, in call order, from our own pid (NotifyAccess=main).
func TestNotifierSendsInOrder(t *testing.T) {
	sock := listenNotify(t, filepath.Join(shortDir(t), "notify"))
	n, err := NewNotifier(sock.name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !n.Enabled() {
		t.Fatal("Enabled() = false for a socket path")
	}

	recv := func(want string) {
		t.Helper()
		got, pid := sock.recv(t)
		if got != want {
			t.Errorf("got datagram %q, want %q", got, want)
		}
		if pid != int32(os.Getpid()) {
			t.Errorf("datagram %q came from pid %d, want %d (systemd would drop it under NotifyAccess=main)", got, pid, os.Getpid())
		}
	}

	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	recv("READY=1")

	before := monotonicNow(t)
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicNow(t)
	got, _ := sock.recv(t)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading sent %q, want \"RELOADING=1\\nMONOTONIC_USEC=<µs>\"", got)
	}
	usec, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatalf("Reloading sent %q: %v", got, err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d, want the CLOCK_MONOTONIC time of the call, in [%d, %d]", usec, before, after)
	}

	if err := n.ReloadFailed(errors.New("fcgivisor.toml:12: pool.php.workers: must be at least 1\n(and 2 more errors)")); err != nil {
		t.Fatal(err)
	}
	recv("READY=1\nSTATUS=reload refused: fcgivisor.toml:12: pool.php.workers: must be at least 1 (and 2 more errors)")

	if err := n.ReadyWithStatus("2 pools, 5 workers"); err != nil {
		t.Fatal(err)
	}
	recv("READY=1\nSTATUS=2 pools, 5 workers")

	if err := n.Status("serving\r\n3 pools"); err != nil {
		t.Fatal(err)
	}
	recv("STATUS=serving  3 pools")

	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	recv("STOPPING=1")

	if err := n.Watchdog(); err != nil {
		t.Fatal(err)
	}
	recv("WATCHDOG=1")
}

// TestNotifierAbstractSocket: "@name" is a socket in the abstract namespace.
func TestNotifierAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@fcgivisor-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	sock := listenNotify(t, name)
	n, err := NewNotifier(name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if got, _ := sock.recv(t); got != "READY=1" {
		t.Errorf("abstract socket got %q, want READY=1", got)
	}
	// The abstract name must not have become a file.
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s: %v; an abstract name must not exist as a file", name, err)
	}
}

// TestNotifierDisabled: without NOTIFY_SOCKET every method is a no-op,
// also on a nil *Notifier, and no fd is opened.
func TestNotifierDisabled(t *testing.T) {
	fds := openFDs(t)
	n, err := NewNotifier("")
	if err != nil {
		t.Fatalf("NewNotifier(\"\"): %v", err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("a disabled notifier opened %d fds", got-fds)
	}
	for _, n := range []*Notifier{n, nil} {
		if n.Enabled() {
			t.Errorf("notifier %p: Enabled() = true", n)
		}
		for name, call := range map[string]func() error{
			"Ready":           n.Ready,
			"Reloading":       n.Reloading,
			"ReloadFailed":    func() error { return n.ReloadFailed(errors.New("x")) },
			"ReadyWithStatus": func() error { return n.ReadyWithStatus("x") },
			"Status":          func() error { return n.Status("x") },
			"Stopping":        n.Stopping,
			"Watchdog":        n.Watchdog,
			"Close":           n.Close,
		} {
			if err := call(); err != nil {
				t.Errorf("disabled notifier %p: %s() = %v, want nil", n, name, err)
			}
		}
	}
}

func TestNewNotifierRejects(t *testing.T) {
	for _, p := range []string{
		"run/systemd/notify",           // relative
		"vsock:2:1234",                 // VM notify sockets: not supported
		"@",                            // empty abstract name
		"/" + strings.Repeat("x", 200), // longer than sun_path
		"/run/a\x00b",
	} {
		if n, err := NewNotifier(p); err == nil {
			n.Close()
			t.Errorf("NewNotifier(%q) = nil error, want one", p)
		}
	}
}

// TestNotifierMissingSocket: a send to a socket that does not exist fails
// with an error naming the socket, for main to log.
func TestNotifierMissingSocket(t *testing.T) {
	p := filepath.Join(shortDir(t), "gone")
	n, err := NewNotifier(p)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	err = n.Ready()
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), p) {
		t.Errorf("Ready() to a missing socket = %v, want ENOENT naming %s", err, p)
	}
}

// TestNotifierSendIsBounded: when the receiver stops reading (systemd
// stuck), a send fails after the timeout instead of blocking the caller,
// and sending works again once there is room.
func TestNotifierSendIsBounded(t *testing.T) {
	sock := listenNotify(t, filepath.Join(shortDir(t), "notify"))
	n, err := NewNotifier(sock.name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.timeout = 100 * time.Millisecond
	var sent int
	for ; sent < 100000; sent++ {
		start := time.Now()
		err = n.Status("filling " + strconv.Itoa(sent))
		if err != nil {
			if d := time.Since(start); d < n.timeout || d > 5*time.Second {
				t.Errorf("the failing send took %v, want about %v", d, n.timeout)
			}
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after %d sends to a receiver that never reads: %v, want a deadline error", sent, err)
	}
	if sent == 0 {
		t.Fatal("the first send already failed")
	}
	if got, _ := sock.recv(t); got != "STATUS=filling 0" {
		t.Errorf("first queued datagram %q", got)
	}
	if err := n.Ready(); err != nil {
		t.Errorf("send after the receiver made room: %v", err)
	}
}

// TestNotifierConcurrent: concurrent senders each get a whole datagram
// through (run with -race).
func TestNotifierConcurrent(t *testing.T) {
	sock := listenNotify(t, filepath.Join(shortDir(t), "notify"))
	n, err := NewNotifier(sock.name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	const senders, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := n.Status(fmt.Sprintf("sender %d message %d", s, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	seen := map[string]bool{}
	for range senders * each {
		got, _ := sock.recv(t)
		if seen[got] {
			t.Errorf("datagram %q received twice", got)
		}
		seen[got] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for s := range senders {
		for i := range each {
			if want := fmt.Sprintf("STATUS=sender %d message %d", s, i); !seen[want] {
				t.Errorf("missing %q", want)
			}
		}
	}
}

// TestNotifierClose: Close releases the socket; a later send fails.
func TestNotifierClose(t *testing.T) {
	sock := listenNotify(t, filepath.Join(shortDir(t), "notify"))
	fds := openFDs(t)
	n, err := NewNotifier(sock.name)
	if err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got != fds+1 {
		t.Errorf("NewNotifier opened %d fds, want 1", got-fds)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("after Close %d fds remain open", got-fds)
	}
	if err := n.Ready(); err == nil {
		t.Error("Ready() after Close = nil, want an error")
	}
}

func TestStatusLine(t *testing.T) {
	long := strings.Repeat("é", maxStatusBytes) // 2 bytes a rune
	for _, tc := range []struct{ in, want string }{
		{"2 pools, 5 workers", "2 pools, 5 workers"},
		{"a\nb", "a b"},
		{"a\r\nb\n", "a  b"},
		{"tab\tkept", "tab\tkept"},
		{"nul\x00byte", "nul\uFFFDbyte"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"line\u2028sep", "line sep"},
		{"  padded\n", "padded"},
	} {
		if got := statusLine(tc.in); got != tc.want {
			t.Errorf("statusLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := statusLine(long)
	if len(got) > maxStatusBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || len(got) < maxStatusBytes-8 {
		t.Errorf("statusLine(%d bytes) = %d bytes, valid UTF-8 %v, ends %q; want ≤ %d valid bytes ending in …",
			len(long), len(got), utf8.ValidString(got), got[len(got)-4:], maxStatusBytes)
	}
}
