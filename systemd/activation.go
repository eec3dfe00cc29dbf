// This file implements socket activation (sd_listen_fds(3)): systemd, or
// systemd-socket-activate, opens the listening sockets and passes them as
// fds 3, 4, ... with LISTEN_FDS=<count>, LISTEN_PID=<our pid> and
// LISTEN_FDNAMES=<name>:<name>... (from FileDescriptorName=). fcgivisor
// matches them by address to http.listen entries, so a config works the
// same with and without a .socket unit.

package systemd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listenFDsStart is SD_LISTEN_FDS_START: the first passed fd.
const listenFDsStart = 3

// maxListenFDs bounds LISTEN_FDS. systemd passes at most a few hundred; a
// larger count is a corrupt variable, not a socket unit.
const maxListenFDs = 4096

// unknownName is what sd_listen_fds_with_names(3) reports for an fd that
// LISTEN_FDNAMES does not name.
const unknownName = "unknown"

// Listener is one socket passed by systemd.
type Listener struct {
	// Name is the fd's name from LISTEN_FDNAMES (FileDescriptorName=,
	// which defaults to the .socket unit's name), or "unknown".
	Name string
	// File owns the fd (close-on-exec). net.FileListener(File) gives a
	// net.Listener on a dup of it; keep File open for the life of the
	// process so a reload can serve the socket again.
	File *os.File
	// Network is "tcp" or "unix" for a listening stream socket, "udp",
	// "unixgram" or "unixpacket" for the other socket types, and ""
	// for what fcgivisor cannot serve: not a socket, an unknown
	// family, or a connected stream socket (Accept=yes).
	Network string
	// Addr is the socket's own address: "ip:port" ("[ip]:port" for IPv6)
	// for TCP and UDP, the path or "@name" for Unix sockets.
	Addr string
}

// Inherited returns the sockets systemd passed, given the values of
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES as main read them and main's own
// pid. It returns none, and no error, when LISTEN_PID or LISTEN_FDS is
// unset, LISTEN_FDS is 0, or LISTEN_PID names another process (the
// variables were meant for a parent that leaked them). A malformed value, or
// a passed fd that is not open, is an error. Every passed fd is made
// close-on-exec, so no worker inherits it.
func Inherited(listenPID, listenFDs, listenFDNames string, self int) ([]Listener, error) {
	return inherited(listenPID, listenFDs, listenFDNames, self, listenFDsStart)
}

// inherited is Inherited with the first fd as a parameter, so tests can
// hand over sockets on free fds inside the test process.
func inherited(listenPID, listenFDs, listenFDNames string, self, start int) ([]Listener, error) {
	if listenPID == "" || listenFDs == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(listenPID)
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("LISTEN_PID=%q: not a process id", listenPID)
	}
	if pid != self {
		return nil, nil
	}
	n, err := strconv.Atoi(listenFDs)
	if err != nil || n < 0 || n > maxListenFDs {
		return nil, fmt.Errorf("LISTEN_FDS=%q: not a number of fds from 0 to %d", listenFDs, maxListenFDs)
	}
	if n == 0 {
		return nil, nil
	}
	var names []string
	if listenFDNames != "" {
		names = strings.Split(listenFDNames, ":")
	}
	// Close-on-exec first, for every fd, before anything can fail: the
	// fds must not reach a worker even if start-up goes on without them.
	var errs []error
	for fd := start; fd < start+n; fd++ {
		if err := setCloexec(fd); err != nil {
			errs = append(errs, fmt.Errorf("LISTEN_FDS=%d: fd %d: %w", n, fd, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ls := make([]Listener, n)
	for i := range ls {
		fd := start + i
		name := unknownName
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		network, addr := describe(fd)
		ls[i] = Listener{
			Name:    name,
			File:    os.NewFile(uintptr(fd), "systemd:"+name),
			Network: network,
			Addr:    addr,
		}
	}
	return ls, nil
}

func setCloexec(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		if errors.Is(err, unix.EBADF) {
			return errors.New("not open (was the socket unit's fd list changed under a running service?)")
		}
		return err
	}
	if flags&unix.FD_CLOEXEC != 0 {
		return nil
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC)
	return err
}

// describe returns the network and local address of fd, or "" for what
// fcgivisor cannot serve (see Listener.Network).
func describe(fd int) (network, addr string) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "", "" // ENOTSOCK: a FIFO or file (ListenFIFO=, ...)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", ""
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
		network = ipNetwork(typ)
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.ZoneId), 10))
		}
		addr = netip.AddrPortFrom(ip, uint16(sa.Port)).String()
		network = ipNetwork(typ)
	case *unix.SockaddrUnix:
		addr = sa.Name // x/sys/unix spells an abstract name "@name"
		switch typ {
		case unix.SOCK_STREAM:
			network = "unix"
		case unix.SOCK_DGRAM:
			network = "unixgram"
		case unix.SOCK_SEQPACKET:
			network = "unixpacket"
		}
	default:
		return "", ""
	}
	if typ == unix.SOCK_STREAM {
		// With Accept=yes systemd passes a connected socket, which no
		// net.FileListener can serve.
		if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
			return "", addr
		}
	}
	return network, addr
}

// ipNetwork names an IP socket's network for its type; "" for SCTP & co.
func ipNetwork(typ int) string {
	switch typ {
	case unix.SOCK_STREAM:
		return "tcp"
	case unix.SOCK_DGRAM:
		return "udp"
	}
	return ""
}

// Match returns the listener in ls that serves network and address as
// conf.ParseAddr gives them ("tcp" "host:port", "unix" "/path"), or false.
//
//   - TCP/UDP: equal port and equal IP, an IPv4-mapped IPv6 address being
//     its IPv4 address. Every wildcard host ("", "0.0.0.0", "::") matches
//     every wildcard socket of the port, as Go's own net.Listen treats them
//     all as one dual-stack socket. A host name (localhost) matches nothing:
//     write an IP literal to match a socket unit.
//   - Unix: equal cleaned path; abstract "@name" exactly.
//
// Names play no part: an address identifies a socket, FileDescriptorName=
// only labels it in logs.
func Match(ls []Listener, network, address string) (*Listener, bool) {
	want, ok := matchKey(network, address)
	if !ok {
		return nil, false
	}
	for i := range ls {
		if k, ok := matchKey(ls[i].Network, ls[i].Addr); ok && k == want {
			return &ls[i], true
		}
	}
	return nil, false
}

// matchKey returns a string equal for two (network, address) pairs that
// name the same socket, or false if there is none.
func matchKey(network, address string) (string, bool) {
	switch network {
	case "tcp", "udp":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return "", false
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return "", false
		}
		if host == "" {
			return network + " *:" + strconv.FormatUint(p, 10), true
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", false
		}
		ip = ip.Unmap()
		if ip.IsUnspecified() {
			return network + " *:" + strconv.FormatUint(p, 10), true
		}
		return network + " " + netip.AddrPortFrom(ip, uint16(p)).String(), true
	case "unix", "unixgram", "unixpacket":
		switch {
		case address == "":
			return "", false
		case strings.HasPrefix(address, "@"):
			return network + " " + address, true
		default:
			return network + " " + filepath.Clean(address), true
		}
	}
	return "", false
}
