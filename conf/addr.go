// This file implements listen addresses and client address lists: the
// syntax of "unix:/path" and "host:port", and how two addresses compare.

package conf

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// maxUnixPath is the longest Unix socket path Linux accepts: sun_path holds
// 108 bytes including the terminating NUL.
const maxUnixPath = 107

const addrHelp = `want "unix:/path", "/path" or "host:port"`

// ParseAddr splits a listen address: "unix:/path" and "/path" give
// ("unix", "/path"); "host:port" gives ("tcp", "host:port"). The port must be
// a number from 0 to 65535; IPv6 hosts are written in brackets
// ("[::1]:9000"). A Unix path may be relative (Load resolves it against the
// config file's directory) but not longer than 107 bytes.
func ParseAddr(s string) (network, address string, err error) {
	switch {
	case s == "":
		return "", "", fmt.Errorf("empty address (%s)", addrHelp)
	case strings.HasPrefix(s, "unix:"), strings.HasPrefix(s, "/"):
		path := strings.TrimPrefix(s, "unix:")
		if path == "" {
			return "", "", fmt.Errorf("invalid address %q: no socket path after \"unix:\"", s)
		}
		if strings.IndexByte(path, 0) >= 0 {
			return "", "", fmt.Errorf("invalid address %q: the path contains a NUL byte", s)
		}
		if len(path) > maxUnixPath {
			return "", "", fmt.Errorf("invalid address %q: the socket path is %d bytes, over the %d-byte limit of Unix sockets", s, len(path), maxUnixPath)
		}
		return "unix", path, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("invalid address %q (%s)", s, addrHelp)
	}
	if strings.ContainsAny(host, " \t\r\n/") {
		return "", "", fmt.Errorf("invalid address %q: bad host %q (%s)", s, host, addrHelp)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", fmt.Errorf("invalid address %q: port %q is not a number from 0 to 65535", s, port)
	}
	return "tcp", s, nil
}

// sameAddrKey returns a string that is equal for two addresses that name the
// same socket: a cleaned path for Unix sockets, and for TCP the host
// (canonical form for IPs, lower case for names) with the port as a number.
// Port 0 picks a free port, so it never collides: ok is false then.
func sameAddrKey(network, address string) (key string, ok bool) {
	if network == "unix" {
		return "unix:" + filepath.Clean(address), true
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else {
		host = strings.ToLower(host)
	}
	return "tcp:" + net.JoinHostPort(host, strconv.FormatUint(p, 10)), true
}

// parseClient parses one allowed_clients entry: an IP address ("10.0.0.7",
// "::1") or a CIDR prefix ("10.0.0.0/8"). A bare address becomes a prefix
// that holds only it; host bits of a prefix are masked off.
func parseClient(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix (e.g. \"10.0.0.7\", \"10.0.0.0/8\", \"::1\")", s)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: clients are matched
			// unmapped.
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix (e.g. \"10.0.0.7\", \"10.0.0.0/8\", \"::1\")", s)
	}
	a = a.Unmap() // ::ffff:10.0.0.7 is 10.0.0.7: clients are matched unmapped
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// AllowedPrefixes returns allowed_clients as prefixes, in file order. When
// allowed_clients is empty it returns the loopback prefixes 127.0.0.0/8 and
// ::1/128, the documented default. Load has checked every entry, so
// entries that do not parse (possible only for a Pool not made by Load) are
// left out.
func (p *Pool) AllowedPrefixes() []netip.Prefix {
	if len(p.AllowedClients) == 0 {
		return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	out := make([]netip.Prefix, 0, len(p.AllowedClients))
	for _, s := range p.AllowedClients {
		if pr, err := parseClient(s); err == nil {
			out = append(out, pr)
		}
	}
	return out
}
