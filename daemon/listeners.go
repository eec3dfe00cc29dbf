package daemon

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/systemd"
)

// listenerKey names a listen address for matching across reloads:
// "network address", with TCP addresses normalised (so that "[::1]:80" and
// "[0::1]:80" are one).
func listenerKey(addr string) (string, error) {
	network, address, err := conf.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	if network == "tcp" {
		if ap, err := netip.ParseAddrPort(address); err == nil {
			address = ap.String()
		}
	}
	return network + " " + address, nil
}

// inheritedKey is the listener key of a socket systemd passed; "" when it
// has no address a listen key can name.
func inheritedKey(l systemd.Listener) string {
	if l.Network != "tcp" && l.Network != "unix" {
		return ""
	}
	addr := l.Addr
	if l.Network == "unix" {
		addr = "unix:" + addr
	}
	k, err := listenerKey(addr)
	if err != nil {
		return ""
	}
	return k
}

// wantedListeners is the set of cfg's http.listen keys.
func wantedListeners(cfg *conf.Config) map[string]bool {
	wanted := make(map[string]bool, len(cfg.HTTP.Listen))
	for _, a := range cfg.HTTP.Listen {
		key, _ := listenerKey(a) // validated by conf
		wanted[key] = true
	}
	return wanted
}

// openListeners opens the http.listen addresses not in have and returns
// the new ones by key. A socket systemd passed for an address is used
// instead of opening one (a dup: closing it leaves systemd's socket
// alone, for later reloads). On error nothing stays open.
func openListeners(cfg *conf.Config, have map[string]net.Listener, inherited []systemd.Listener) (map[string]net.Listener, error) {
	opened := make(map[string]net.Listener)
	for i, a := range cfg.HTTP.Listen {
		key, err := listenerKey(a)
		if err == nil {
			if _, ok := have[key]; ok {
				continue
			}
			network, address, _ := conf.ParseAddr(a)
			var l net.Listener
			if sl, ok := systemd.Match(inherited, network, address); ok {
				l, err = net.FileListener(sl.File)
			} else {
				l, err = socket.Listen(network, address, socket.Mode(0o666))
			}
			if err == nil {
				opened[key] = l
				continue
			}
		}
		for _, l := range opened {
			l.Close()
		}
		return nil, fmt.Errorf("http.listen[%d] %q: %w", i, a, err)
	}
	return opened, nil
}
