package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"

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
// the new ones by key; a new Unix socket gets perm. A socket systemd
// passed for an address is used instead of opening one (a dup: closing it
// leaves systemd's socket alone, for later reloads; it keeps the socket
// unit's mode). On error nothing stays open.
func openListeners(cfg *conf.Config, have map[string]net.Listener, inherited []systemd.Listener, perm socket.Perm) (map[string]net.Listener, error) {
	opened := make(map[string]net.Listener)
	for i, a := range cfg.HTTP.Listen {
		key, err := listenerKey(a)
		if err == nil {
			if _, ok := have[key]; ok {
				continue
			}
			network, address, _ := conf.ParseAddr(a)
			var l net.Listener
			if l, err = listen(network, address, "", inherited, perm); err == nil {
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

// listen opens a listener on network and address: the socket systemd
// passed for that address, or (name not "") the one whose
// FileDescriptorName= is name, else a new one with perm. A passed socket
// is dup'ed (closing the listener leaves systemd's socket alone, for later
// reloads) and keeps the socket unit's mode.
func listen(network, address, name string, inherited []systemd.Listener, perm socket.Perm) (net.Listener, error) {
	if sl, ok := systemd.Match(inherited, network, address); ok {
		return net.FileListener(sl.File)
	}
	for _, sl := range inherited {
		if name != "" && sl.Name == name {
			return net.FileListener(sl.File)
		}
	}
	return socket.Listen(network, address, perm)
}

// listenPerms is what the Unix sockets fcgivisor creates for [http] and
// [status] get: listen_mode, listen_owner and listen_group resolved.
type listenPerms struct {
	http, status socket.Perm
	pools        map[string]socket.Perm // by pool name: its listen socket
}

// resolveListenPerms resolves the listen_mode, listen_owner and
// listen_group of [http] and [status]. Each error names its key;
// CheckPrivileges reports them too, so that check refuses what run would.
func resolveListenPerms(cfg *conf.Config, privileged bool) (listenPerms, []error) {
	var p listenPerms
	var errs, more []error
	h, st := cfg.HTTP, cfg.Status
	p.http, errs = socketPerm("http", h.ListenMode, h.ListenOwner, h.ListenGroup, privileged)
	p.status, more = socketPerm("status", st.ListenMode, st.ListenOwner, st.ListenGroup, privileged)
	errs = append(errs, more...)
	p.pools = make(map[string]socket.Perm)
	for _, pc := range cfg.Pools() {
		p.pools[pc.Name], more = socketPerm("pool."+pc.Name, pc.ListenMode, pc.ListenOwner, pc.ListenGroup, privileged)
		errs = append(errs, more...)
	}
	return p, errs
}

// socketPerm resolves the mode, owner and group of table's Unix sockets.
// "" keeps what the kernel gives (fcgivisor's user and group). As root
// any user and group go; otherwise only fcgivisor's own user and the
// groups its process is in, since the kernel refuses other chowns:
// refused here with the fix rather than at bind, so that check, run and
// reload say the same (issue 10).
func socketPerm(table string, mode conf.FileMode, owner, group string, privileged bool) (socket.Perm, []error) {
	p := socket.Perm{Mode: mode.Perm(), UID: -1, GID: -1}
	var errs []error
	if owner != "" {
		key := table + ".listen_owner"
		u, err := user.Lookup(owner)
		uid := -1
		if err == nil {
			uid, _ = strconv.Atoi(u.Uid)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: user %q: %w", key, owner, err))
		case !privileged && uid != os.Geteuid():
			errs = append(errs, fmt.Errorf("%s: fcgivisor runs as uid %d, not root, and cannot give its sockets to user %q (uid %d): leave listen_owner empty, or run fcgivisor as root",
				key, os.Geteuid(), owner, uid))
		default:
			p.UID = uid
		}
	}
	if group != "" {
		key := table + ".listen_group"
		g, err := user.LookupGroup(group)
		gid := -1
		if err == nil {
			gid, _ = strconv.Atoi(g.Gid)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: group %q: %w", key, group, err))
		case !privileged && !inGroup(gid):
			errs = append(errs, fmt.Errorf("%s: fcgivisor runs as uid %d, not root, and is not in group %q (gid %d), so it cannot give its sockets to it: add fcgivisor's user to the group, leave listen_group empty, or run fcgivisor as root",
				key, os.Geteuid(), group, gid))
		default:
			p.GID = gid
		}
	}
	return p, errs
}

// inGroup reports whether the process may chown a file it owns to gid:
// its effective group or one of its supplementary groups.
func inGroup(gid int) bool {
	if gid == os.Getegid() {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, gid)
}
