package daemon

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// A reload (SIGHUP, `fcgivisor reload`, POST /reload) applies the config
// file anew:
//
//  1. The file is parsed and validated fully, and checked against the
//     machine as at start (Check: users and groups, commands,
//     directories); an invalid file changes nothing.
//  2. plan decides each pool's fate: unchanged pools keep their workers;
//     pools whose changes touch only what supervisor.Pool.Update applies
//     (scaling limits, timeouts) take them live; other changed pools start
//     a new generation; removed pools drain; new pools start.
//  3. New listen addresses are opened (an address that cannot be opened
//     refuses the reload) and the new generations start; the reload waits
//     until they are ready. A new generation whose workers all died at
//     start refuses the reload and is undone: the running one is kept.
//  4. Live updates apply, the front's routes and [http] swap in one
//     store, the new listeners serve, removed ones close, and the replaced generations drain into
//     their successors (old requests finish, queued ones move over).
//
// [server], [admin] and [status] settings other than shutdown_timeout and max_procs
// need a restart; a reload that changes them says so in the log. So do
// http.listen_mode, listen_owner and listen_group for the Unix sockets a
// reload keeps: fcgivisor never chmods a path it made earlier, which
// others may have replaced with a symlink since; sockets the reload opens
// get the new values.

// plan is what a reload does to the pools, by name.
type plan struct {
	start  []*conf.Pool // not running: start
	renew  []*conf.Pool // changed beyond Update: a new generation
	update []*conf.Pool // changed within Update: applied live
	keep   []string     // unchanged
	remove []string     // not in the new file: drain and stop
}

// planPools compares the running pools with the new file's.
func planPools(running map[string]*conf.Pool, next []*conf.Pool) plan {
	var pl plan
	seen := make(map[string]bool, len(next))
	for _, pc := range next {
		seen[pc.Name] = true
		old := running[pc.Name]
		switch {
		case old == nil:
			pl.start = append(pl.start, pc)
		case supervisor.NeedsRestart(old, pc):
			pl.renew = append(pl.renew, pc)
		case !reflect.DeepEqual(*old, *pc):
			pl.update = append(pl.update, pc)
		default:
			pl.keep = append(pl.keep, pc.Name)
		}
	}
	for name := range running {
		if !seen[name] {
			pl.remove = append(pl.remove, name)
		}
	}
	sort.Strings(pl.keep)
	sort.Strings(pl.remove)
	return pl
}

// drain is a pool generation that stops once its requests are done; next
// (nil for a removed pool) takes its queued requests.
type drain struct {
	old  *poolRun
	next *supervisor.Pool
}

// reload runs on the loop's goroutine; see the comment at the top.
func (in *instance) reload() (err error) {
	begin := time.Now()
	cfg, err := in.loadForReload()
	if err != nil {
		return err
	}
	acc, err := in.accessFor(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && acc != in.access {
			acc.close() // opened for a reload refused
		}
	}()
	perms, errs := resolveListenPerms(cfg, in.o.Privileged)
	if len(errs) > 0 { // CheckPrivileges passed: a user or group just went
		return fmt.Errorf("%s: %w", cfg.File, errors.Join(errs...))
	}
	opened, err := openListeners(cfg, in.listeners, in.sd.inherited, perms.http)
	if err != nil {
		return err
	}
	pubOpened, err := openPublic(cfg, in.public, in.sd.inherited, perms.pools)
	if err != nil {
		for _, l := range opened {
			l.Close()
		}
		return err
	}
	pl := planPools(in.runningConfigs(), cfg.Pools())
	next, drains := in.apply(pl)
	for _, pr := range next {
		<-pr.pool.Ready()
	}
	err = in.refuseFailedStarts(drains)
	if err == nil {
		err = in.srv.Update(cfg, poolMap(next)) // validated: does not fail
	}
	if err != nil {
		in.undo(next, opened)
		closePending(pubOpened)
		return err
	}
	in.swapAccess(cfg, acc)
	for _, pc := range pl.update {
		pr := in.pools[pc.Name]
		pr.pool.Update(pc)
		pr.cfg = pc
	}
	in.swapListeners(cfg, opened)
	for _, d := range drains {
		d.old.pool.Drain(d.next)
	}
	in.mu.Lock()
	in.pools = next
	in.mu.Unlock()
	in.cfg = cfg
	in.o.applyProcs(cfg)
	in.servePublic(pubOpened)
	in.forgetDrained()
	in.log.Info("reloaded", "kept", pl.keep, "updated", names(pl.update), "new_generation", names(pl.renew),
		"started", names(pl.start), "removed", pl.remove, "duration", time.Since(begin).Round(time.Microsecond))
	return nil
}

// loadForReload reads and validates the file as start would.
func (in *instance) loadForReload() (*conf.Config, error) {
	cfg, err := conf.Load(in.o.Path)
	if err != nil {
		return nil, err
	}
	s, old := cfg.Server, in.cfg.Server
	if s.RuntimeDir != old.RuntimeDir || cfg.Admin.Listen != in.cfg.Admin.Listen || cfg.Status != in.cfg.Status ||
		s.LogFile != old.LogFile || s.LogFormat != old.LogFormat ||
		s.LogLevel != old.LogLevel || s.PIDFile != old.PIDFile {
		in.log.Warn("reload: [server], [admin] and [status] settings other than shutdown_timeout and max_procs take effect at the next restart")
	}
	h, oh := cfg.HTTP, in.cfg.HTTP
	if h.ListenMode != oh.ListenMode || h.ListenOwner != oh.ListenOwner || h.ListenGroup != oh.ListenGroup {
		in.log.Warn("reload: http.listen_mode, listen_owner and listen_group apply to Unix sockets opened from now on; the sockets kept keep theirs until the next restart")
	}
	if err := Check(cfg, in.o.Privileged, in.o.Getenv, in.log); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (in *instance) runningConfigs() map[string]*conf.Pool {
	m := make(map[string]*conf.Pool, len(in.pools))
	for name, pr := range in.pools {
		m[name] = pr.cfg
	}
	return m
}

// apply carries out pl's pool changes that can be undone: it starts new
// pools and generations, and returns the next generation by name and what
// is to drain once the reload stands. Live updates wait for that too.
func (in *instance) apply(pl plan) (next map[string]*poolRun, drains []drain) {
	next = make(map[string]*poolRun)
	for _, pc := range pl.start {
		next[pc.Name] = in.startPool(pc)
	}
	for _, pc := range pl.renew {
		pr := in.startPool(pc)
		next[pc.Name] = pr
		drains = append(drains, drain{in.pools[pc.Name], pr.pool})
	}
	for _, pc := range pl.update {
		next[pc.Name] = in.pools[pc.Name]
	}
	for _, name := range pl.keep {
		next[name] = in.pools[name]
	}
	for _, name := range pl.remove {
		drains = append(drains, drain{in.pools[name], nil})
	}
	return next, drains
}

// refuseFailedStarts refuses a reload in which a new generation's workers
// all died at start: it would replace a working generation with nothing.
func (in *instance) refuseFailedStarts(drains []drain) error {
	for _, d := range drains {
		if d.next != nil && d.next.StartFailed() {
			st := d.next.Status()
			return fmt.Errorf("pool.%s: the new workers died at start (%s); the running workers are kept", st.Name, st.LastExit)
		}
	}
	return nil
}

// undo stops the pools a refused reload started and closes the listeners
// it opened.
func (in *instance) undo(next map[string]*poolRun, opened map[string]net.Listener) {
	for name, pr := range next {
		if in.pools[name] != pr {
			pr.pool.Drain(nil)
		}
	}
	for _, l := range opened {
		l.Close()
	}
}

// swapListeners hands the opened listeners to the front and closes those
// cfg no longer names.
func (in *instance) swapListeners(cfg *conf.Config, opened map[string]net.Listener) {
	ls := make([]net.Listener, 0, len(opened))
	for key, l := range opened {
		in.listeners[key] = l
		ls = append(ls, l)
	}
	in.srv.Serve(ls)
	wanted := wantedListeners(cfg)
	for key, l := range in.listeners {
		if !wanted[key] {
			l.Close()
			delete(in.listeners, key)
		}
	}
}

// forgetDrained forgets pools whose Run has returned.
func (in *instance) forgetDrained() {
	in.mu.Lock()
	defer in.mu.Unlock()
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

func names(pcs []*conf.Pool) []string {
	ns := make([]string, len(pcs))
	for i, pc := range pcs {
		ns[i] = pc.Name
	}
	return ns
}
