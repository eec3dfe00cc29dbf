package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/public"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/systemd"
)

// The pools' public FastCGI sockets (pool listen): opened with the other
// listeners, before the pools start, so that an address in use fails the
// start (or refuses the reload) before anything runs; served once the
// pools are ready. They are kept by listenerKey across reloads, as
// http.listen's are: a pool whose address stays keeps its socket (its
// Socket serves the new generation), a new address opens, and one no
// pool names any more closes, its connections finishing their request
// (retired, joined at shutdown).

// pubSock is one pool's public socket.
type pubSock struct {
	pool string
	l    net.Listener   // until it serves
	sock *public.Socket // once it serves
}

// openPublic opens the pool listen addresses of cfg not in have, and
// returns them by key. On error nothing stays open.
func openPublic(cfg *conf.Config, have map[string]*pubSock, inherited []systemd.Listener, perms map[string]socket.Perm) (map[string]*pubSock, error) {
	opened := make(map[string]*pubSock)
	for _, pc := range cfg.Pools() {
		if pc.Listen == "" {
			continue
		}
		key, err := listenerKey(pc.Listen)
		if err == nil {
			if _, ok := have[key]; ok {
				continue
			}
			network, address, _ := conf.ParseAddr(pc.Listen)
			var l net.Listener
			if l, err = listen(network, address, pc.Name, inherited, perms[pc.Name]); err == nil {
				opened[key] = &pubSock{pool: pc.Name, l: l}
				continue
			}
		}
		closePending(opened)
		return nil, fmt.Errorf("pool.%s.listen %q: %w", pc.Name, pc.Listen, err)
	}
	return opened, nil
}

// closePending closes sockets opened and not yet served.
func closePending(m map[string]*pubSock) {
	for _, ps := range m {
		if ps.l != nil && ps.sock == nil {
			ps.l.Close()
		}
	}
}

// wantedPublic is the set of cfg's pool listen keys.
func wantedPublic(cfg *conf.Config) map[string]*conf.Pool {
	m := make(map[string]*conf.Pool)
	for _, pc := range cfg.Pools() {
		if pc.Listen != "" {
			key, _ := listenerKey(pc.Listen) // validated by conf
			m[key] = pc
		}
	}
	return m
}

// servePublic serves the opened sockets and brings the kept ones to the
// current pools and settings; sockets no pool names any more are closed
// and retired. It runs once the pools of in.pools are ready.
func (in *instance) servePublic(opened map[string]*pubSock) {
	for key, ps := range opened {
		in.public[key] = ps
	}
	wanted := wantedPublic(in.cfg)
	for key, ps := range in.public {
		pc := wanted[key]
		if pc == nil {
			ps.sock.Close()
			in.retired = append(in.retired, ps.sock)
			delete(in.public, key)
			continue
		}
		pool := in.pools[pc.Name].pool
		ps.pool = pc.Name
		if ps.sock == nil {
			ps.sock = public.Serve(ps.l, pool, pc, &in.cfg.HTTP, public.Options{Log: in.log, Parent: in.o.Parent})
			ps.l = nil
		} else {
			ps.sock.Update(pool, pc, &in.cfg.HTTP)
		}
	}
}

// shutdownPublic closes every public socket and waits for their
// requests up to ctx, then cuts them.
func (in *instance) shutdownPublic(ctx context.Context) error {
	socks := in.retired
	for _, ps := range in.public {
		if ps.sock != nil {
			socks = append(socks, ps.sock)
		} else if ps.l != nil {
			ps.l.Close()
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(socks))
	for i, s := range socks {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Shutdown(ctx) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// warnUnusedInherited logs the sockets systemd passed that no listen
// address (http.listen, a pool's listen or its name) took.
func (in *instance) warnUnusedInherited() {
	names := make(map[string]bool)
	for _, pc := range in.cfg.Pools() {
		if pc.Listen != "" {
			names[pc.Name] = true
		}
	}
	for _, l := range in.sd.inherited {
		key := inheritedKey(l)
		_, http := in.listeners[key]
		_, pub := in.public[key]
		if !http && !pub && !names[l.Name] {
			in.log.Warn("a socket passed by systemd matches no http.listen or pool listen address, nor a pool name", "name", l.Name, "addr", l.Addr)
		}
	}
}

// publicList names the pools' public sockets for the start-up log:
// "php=unix:/run/fcgivisor/php.sock,...".
func publicList(cfg *conf.Config) string {
	var b strings.Builder
	for _, pc := range cfg.Pools() {
		if pc.Listen != "" {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(pc.Name + "=" + pc.Listen)
		}
	}
	return b.String()
}
