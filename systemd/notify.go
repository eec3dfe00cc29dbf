// Package systemd speaks the two systemd protocols fcgivisor needs, without
// libsystemd: sd_notify (a datagram of newline-separated KEY=VALUE lines to
// $NOTIFY_SOCKET, man sd_notify(3)) and socket activation (LISTEN_FDS,
// LISTEN_PID, LISTEN_FDNAMES, man sd_listen_fds(3)).
//
// The package never reads the environment: main reads NOTIFY_SOCKET,
// WATCHDOG_USEC, WATCHDOG_PID and LISTEN_* once, passes the values here, and
// unsets them so that nothing fcgivisor starts inherits them.
//
// notify.go is the sd_notify side, watchdog.go the watchdog timer,
// activation.go socket activation.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// defaultSendTimeout bounds one notification. systemd reads its notify
// socket from its main loop; a send that cannot complete within this time
// means systemd is stuck, and the supervisor must not be stuck with it.
const defaultSendTimeout = 5 * time.Second

// maxStatusBytes keeps a STATUS= line well inside the buffer systemd reads a
// notification into (it discards what does not fit, so a long error text
// would otherwise lose the READY=1 sent with it).
const maxStatusBytes = 1024

// Notifier sends sd_notify messages to the socket named by $NOTIFY_SOCKET.
// Each message is one datagram, sent from an unbound, unconnected socket
// with sendto(2), so a notify socket systemd re-creates (daemon-reexec)
// keeps working. A Notifier for an empty path, and a nil *Notifier, do
// nothing and return nil. Methods are safe for concurrent use and keep the
// order in which they are called.
type Notifier struct {
	addr    *net.UnixAddr
	timeout time.Duration

	mu   sync.Mutex
	conn *net.UnixConn // nil when disabled
}

// NewNotifier returns a Notifier for socketPath, the value of $NOTIFY_SOCKET
// as main read it: an absolute path, or "@name" for an abstract socket.
// An empty socketPath returns a no-op Notifier. systemd's "vsock:" addresses
// (virtual machines) are not supported and are an error.
func NewNotifier(socketPath string) (*Notifier, error) {
	n := &Notifier{timeout: defaultSendTimeout}
	if socketPath == "" {
		return n, nil
	}
	if err := checkNotifySocket(socketPath); err != nil {
		return nil, err
	}
	// SOCK_NONBLOCK puts the socket under Go's poller, so a send to a full
	// queue waits for room up to a deadline instead of blocking a thread
	// forever.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: socket: %w", socketPath, err)
	}
	f := os.NewFile(uintptr(fd), "sd_notify")
	pc, err := net.FilePacketConn(f) // dups the fd
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: %w", socketPath, err)
	}
	conn, ok := pc.(*net.UnixConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: got a %T, not a Unix socket", socketPath, pc)
	}
	n.conn = conn
	// The net package maps a leading '@' to the abstract namespace.
	n.addr = &net.UnixAddr{Name: socketPath, Net: "unixgram"}
	return n, nil
}

func checkNotifySocket(p string) error {
	switch {
	case strings.HasPrefix(p, "/"):
		if len(p) >= len(unix.RawSockaddrUnix{}.Path) {
			return fmt.Errorf("NOTIFY_SOCKET %s: path too long for a Unix socket", p)
		}
	case strings.HasPrefix(p, "@"):
		if len(p) == 1 {
			return errors.New("NOTIFY_SOCKET \"@\": empty abstract socket name")
		}
	case strings.HasPrefix(p, "vsock:"):
		return fmt.Errorf("NOTIFY_SOCKET %s: vsock notify sockets are not supported (only Unix sockets: \"/path\" or \"@name\")", p)
	default:
		return fmt.Errorf("NOTIFY_SOCKET %q: want an absolute path or \"@name\"", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("NOTIFY_SOCKET %q: contains a NUL byte", p)
	}
	return nil
}

// Enabled reports whether n was made for a notify socket (a no-op
// Notifier is not). main can use it to skip building STATUS= lines.
func (n *Notifier) Enabled() bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn != nil
}

// Ready says start-up is done: pools have their initial workers and the
// front accepts. Also the end of a reload (after Reloading).
func (n *Notifier) Ready() error { return n.send("READY=1") }

// ReadyWithStatus is Ready with a STATUS= line in the same datagram, so
// systemctl status never shows a stale status next to the new state.
func (n *Notifier) ReadyWithStatus(status string) error {
	return n.send("READY=1\nSTATUS=" + statusLine(status))
}

// Reloading says a reload started. It carries MONOTONIC_USEC, the
// CLOCK_MONOTONIC time of the call: with Type=notify-reload (systemd 253+)
// systemd accepts RELOADING=1 only with a timestamp taken after it sent the
// reload signal, so call this after receiving SIGHUP, never ahead of it.
// Follow it with Ready, ReadyWithStatus or ReloadFailed.
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	usec, err := monotonicUsec()
	if err != nil {
		return fmt.Errorf("sd_notify RELOADING=1: %w", err)
	}
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatUint(usec, 10))
}

// ReloadFailed ends a reload that was refused (the running config stays):
// READY=1, since the service still runs, with STATUS= naming the error.
func (n *Notifier) ReloadFailed(err error) error {
	msg := "unknown error"
	if err != nil {
		msg = err.Error()
	}
	return n.send("READY=1\nSTATUS=" + statusLine("reload refused: "+msg))
}

// Stopping says a graceful stop started.
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Status sets the one-line status systemctl status shows. Line breaks
// become spaces, invalid UTF-8 and NUL bytes are replaced, and the line is
// cut at 1 KiB.
func (n *Notifier) Status(line string) error { return n.send("STATUS=" + statusLine(line)) }

// Watchdog is the keep-alive ping for WatchdogSec=; see RunWatchdog.
func (n *Notifier) Watchdog() error { return n.send("WATCHDOG=1") }

// Close releases the socket; later calls return an error.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		return nil
	}
	return n.conn.Close()
}

// send writes msg as one datagram, within n.timeout.
func (n *Notifier) send(msg string) error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		return nil
	}
	if err := n.conn.SetWriteDeadline(time.Now().Add(n.timeout)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", firstLine(msg), err)
	}
	if _, err := n.conn.WriteToUnix([]byte(msg), n.addr); err != nil {
		return fmt.Errorf("sd_notify %s to %s: %w", firstLine(msg), n.addr.Name, err)
	}
	return nil
}

func firstLine(msg string) string {
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		return msg[:i]
	}
	return msg
}

// statusLine makes s a valid STATUS= value: one line of UTF-8 without NUL
// (systemd ignores a whole message that contains a NUL byte), at most
// maxStatusBytes long.
func statusLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', '\v', '\f', '\u0085', '\u2028', '\u2029':
			return ' '
		case 0:
			return '\uFFFD'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxStatusBytes {
		cut := maxStatusBytes - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd uses
// for MONOTONIC_USEC.
func monotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}
