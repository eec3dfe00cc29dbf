package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/supervisor"
	"github.com/fcgivisor/fcgivisor/systemd"
)

// instance is the running configuration: pools, the front and its
// listeners. Only run's goroutine calls its methods, except pools (admin).
type instance struct {
	path string
	log  *slog.Logger
	env  supervisor.Env
	hard context.Context // done: stop workers at once

	cfg       *conf.Config
	srv       *front.Server
	listeners map[string]net.Listener // by "network address"
	inherited []systemd.Listener      // socket activation: kept for reloads

	mu    sync.Mutex          // guards current for the admin endpoint
	pools map[string]*poolRun // current generation, by name
	all   []*poolRun          // every pool whose Run may still be going
	wg    sync.WaitGroup      // Run goroutines
}

// poolRun is a pool and the cancel of its Run.
type poolRun struct {
	cfg    *conf.Pool
	pool   *supervisor.Pool
	cancel context.CancelFunc
}

func (in *instance) startPool(pc *conf.Pool) *poolRun {
	ctx, cancel := context.WithCancel(context.Background())
	pr := &poolRun{cfg: pc, pool: supervisor.NewPool(pc, in.env), cancel: cancel}
	in.wg.Add(1)
	go func() { defer in.wg.Done(); pr.pool.Run(ctx, in.hard) }()
	in.all = append(in.all, pr)
	return pr
}

// poolList is the current generation, for the admin endpoint.
func (in *instance) poolList() []*supervisor.Pool {
	in.mu.Lock()
	defer in.mu.Unlock()
	ps := make([]*supervisor.Pool, 0, len(in.pools))
	for _, pr := range in.pools {
		ps = append(ps, pr.pool)
	}
	return ps
}

func poolMap(prs map[string]*poolRun) map[string]*supervisor.Pool {
	m := make(map[string]*supervisor.Pool, len(prs))
	for name, pr := range prs {
		m[name] = pr.pool
	}
	return m
}

// stopPools stops every pool (current and draining) and waits for them.
func (in *instance) stopPools() {
	for _, pr := range in.all {
		pr.cancel()
	}
	in.wg.Wait()
}

// listenerKey names a listen address for matching across reloads.
func listenerKey(addr string) (string, error) {
	network, address, err := conf.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	if network == "tcp" {
		if ap, err := netipAddrPort(address); err == nil {
			address = ap
		}
	}
	return network + " " + address, nil
}

// openListeners opens the http.listen addresses not in have; it returns
// the new ones by key. A socket systemd passed (socket activation) for an
// address is used instead of opening one; it stays open in inherited for
// later reloads. On error nothing stays open.
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
				l, err = net.FileListener(sl.File) // a dup: closing it leaves systemd's socket alone
			} else {
				l, err = socket.Listen(network, address, 0o666)
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

// reload applies the config file anew (SIGHUP, `fcgivisor reload`). The
// file is parsed and validated fully first; an invalid file, or a listen
// address that cannot be opened, changes nothing. Then: pools whose
// settings are unchanged keep their workers; pools whose changes only touch
// scaling limits and timeouts take them live; other changed pools start a
// new generation, which takes new requests while the old one finishes its
// own and stops; removed pools drain and stop; new pools start; routes
// swap in one store; listeners that stay stay open, new ones open, removed
// ones stop accepting.
func (in *instance) reload() error {
	start := time.Now()
	cfg, err := conf.Load(in.path)
	if err != nil {
		return err
	}
	if cfg.Server.RuntimeDir != in.cfg.Server.RuntimeDir || cfg.Admin.Listen != in.cfg.Admin.Listen ||
		cfg.Server.LogFile != in.cfg.Server.LogFile || cfg.Server.LogFormat != in.cfg.Server.LogFormat ||
		cfg.Server.LogLevel != in.cfg.Server.LogLevel || cfg.Server.PIDFile != in.cfg.Server.PIDFile {
		in.log.Warn("reload: [server] and [admin] settings other than shutdown_timeout take effect at the next restart")
	}
	if err := checkPrivileges(cfg, in.env.Privileged, in.log); err != nil {
		return err
	}
	wanted := make(map[string]bool)
	for _, a := range cfg.HTTP.Listen {
		key, _ := listenerKey(a)
		wanted[key] = true
	}
	opened, err := openListeners(cfg, in.listeners, in.inherited)
	if err != nil {
		return err
	}

	type drain struct {
		old  *poolRun
		next *supervisor.Pool
	}
	var drains []drain
	next := make(map[string]*poolRun)
	var started, kept, updated, renewed []string
	for _, pc := range cfg.Pools() {
		old := in.pools[pc.Name]
		switch {
		case old == nil:
			next[pc.Name] = in.startPool(pc)
			started = append(started, pc.Name)
		case supervisor.NeedsRestart(old.cfg, pc):
			pr := in.startPool(pc)
			next[pc.Name] = pr
			drains = append(drains, drain{old, pr.pool})
			renewed = append(renewed, pc.Name)
		case !equalPool(old.cfg, pc):
			old.pool.Update(pc)
			old.cfg = pc
			next[pc.Name] = old
			updated = append(updated, pc.Name)
		default:
			next[pc.Name] = old
			kept = append(kept, pc.Name)
		}
	}
	var removed []string
	for name, old := range in.pools {
		if next[name] == nil {
			drains = append(drains, drain{old, nil})
			removed = append(removed, name)
		}
	}
	for _, pr := range next {
		<-pr.pool.Ready()
	}
	// undo stops what this reload started and closes what it opened.
	undo := func() {
		for _, pr := range next {
			if in.pools[pr.cfg.Name] != pr {
				pr.pool.Drain(nil)
			}
		}
		for _, l := range opened {
			l.Close()
		}
	}
	// A new generation whose workers all died at start would replace a
	// working one with nothing: refuse, keep the running generation.
	for _, d := range drains {
		if d.next != nil && d.next.StartFailed() {
			st := d.next.Status()
			undo()
			return fmt.Errorf("pool.%s: the new workers died at start (%s); the running workers are kept", st.Name, st.LastExit)
		}
	}
	if err := in.srv.Update(cfg, poolMap(next)); err != nil {
		undo() // validation makes this unreachable
		return err
	}
	var ls []net.Listener
	for key, l := range opened {
		in.listeners[key] = l
		ls = append(ls, l)
	}
	in.srv.Serve(ls)
	for key, l := range in.listeners {
		if !wanted[key] {
			l.Close()
			delete(in.listeners, key)
		}
	}
	for _, d := range drains {
		d.old.pool.Drain(d.next)
	}
	in.mu.Lock()
	in.pools = next
	in.mu.Unlock()
	in.cfg = cfg
	in.reap()
	sort.Strings(kept)
	in.log.Info("reloaded", "kept", kept, "updated", updated, "new_generation", renewed, "started", started,
		"removed", removed, "duration", time.Since(start).Round(time.Microsecond))
	return nil
}

// summary is the one-line STATUS= for systemd.
func (in *instance) summary() string {
	workers := 0
	for _, p := range in.poolList() {
		st := p.Status()
		workers += len(st.Workers)
	}
	return fmt.Sprintf("%d pools, %d workers, listening on %s", len(in.cfg.Pools()), workers, strings.Join(in.cfg.HTTP.Listen, ", "))
}

// checkPrivileges checks cfg's users and groups as `run` applies them when
// fcgivisor runs as root (privileged) or not; `check` runs it too.
func checkPrivileges(cfg *conf.Config, privileged bool, log *slog.Logger) error {
	var errs []error
	for _, pc := range cfg.Pools() {
		if err := supervisor.CheckPrivileges(pc, privileged, log); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cfg.File, err))
		}
	}
	for _, err := range front.CheckPrivileges(cfg, privileged, log) {
		errs = append(errs, fmt.Errorf("%s: %w", cfg.File, err))
	}
	return errors.Join(errs...)
}

// reap forgets pools whose Run has returned (drained).
func (in *instance) reap() {
	live := in.all[:0]
	for _, pr := range in.all {
		select {
		case <-pr.pool.Done():
			pr.cancel()
			continue
		default:
		}
		live = append(live, pr)
	}
	clear(in.all[len(live):])
	in.all = live
}

func equalPool(a, b *conf.Pool) bool { return reflect.DeepEqual(*a, *b) }

// netipAddrPort normalises "ip:port" (so that "[::1]:80" and "[0::1]:80"
// are one address).
func netipAddrPort(s string) (string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", err
	}
	return ap.String(), nil
}
