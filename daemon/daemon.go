// Package daemon is the running fcgivisor instance: it opens the runtime
// directory and the listeners, starts the pools and the HTTP front, and
// owns them until it stops.
//
// One goroutine, Run's, owns the running state (the config, the pools of
// the current generation, the listeners, the front). Everything that
// changes it reaches that goroutine as a request on a channel: signals
// (from the caller), admin commands (reload, stop) and the systemd
// watchdog's health probe, which the loop answers by being able to answer.
// The admin and status endpoints only read the pool list, under
// instance.mu.
//
// The daemon reads no environment variable, argument or process-wide
// setting itself: cmd/fcgivisor decides those (logger, systemd variables,
// subreaper, the one spawner.Parent, signal delivery) and passes them in
// Options. docs/design.md describes the whole process.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/public"
	"github.com/fcgivisor/fcgivisor/signals"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// Options is what the caller decided from the process's environment.
type Options struct {
	// Path is the config file, read again at each reload; Config is what
	// it held at start.
	Path   string
	Config *conf.Config
	Log    *slog.Logger
	// LogFile is log_file, reopened on SIGUSR1; nil when logging to
	// stderr.
	LogFile *LogFile
	// Stderr is where http.access_log = "stderr" writes; nil: os.Stderr.
	Stderr io.Writer
	// Version is fcgivisor's version, logged and sent as SERVER_SOFTWARE.
	Version string
	// Parent starts and reaps every child of the process; its Run must be
	// going.
	Parent *spawner.Parent
	// Actions are the signals, as signals.Notify delivers them.
	Actions <-chan signals.Action
	// Privileged: fcgivisor runs as root, so users and groups apply.
	Privileged bool
	// Self is fcgivisor's executable, re-exec'ed to apply rlimit_nofile;
	// "" leaves rlimits alone.
	Self string
	// Getenv looks up fcgivisor's own environment: systemd's variables
	// (systemd.go) and, for workers, inherit_env.
	Getenv func(string) (string, bool)
	// Pid is fcgivisor's process id: written to pid_file, and compared
	// with systemd's LISTEN_PID and WATCHDOG_PID.
	Pid int
	// SetProcs sets GOMAXPROCS and returns the previous setting
	// (runtime.GOMAXPROCS) at start and at each reload, as Procs decides
	// from server.max_procs, GOMAXPROCS in the environment and CPUs; nil
	// leaves GOMAXPROCS alone (the package's tests run in one process).
	SetProcs func(int) int
	// CPUs is Go's GOMAXPROCS when the process started: the CPUs it may
	// use (affinity mask, cgroup CPU limit).
	CPUs int
}

// instance is the running configuration: pools, the front and its
// listeners. Only Run's goroutine uses its fields, except pools and all
// (under mu: the admin endpoint reads them) and the request channels.
type instance struct {
	o    Options
	log  *slog.Logger
	env  supervisor.Env
	hard context.Context // done: stop workers at once
	kill context.CancelFunc

	sd        fromSystemd
	rt        *socket.RuntimeDir
	cfg       *conf.Config
	srv       *front.Server
	access    *accessTarget           // http.access_log; nil: none
	listeners map[string]net.Listener // by listenerKey; the front's once it serves them
	public    map[string]*pubSock     // the pools' public sockets, by listenerKey
	retired   []*public.Socket        // public sockets closed by a reload, joined at shutdown
	// stopAdmin shuts the admin and status endpoints down.
	stopAdmin func()
	pidFile   string    // written by start, removed by shutdown
	started   time.Time // when start began: fcgivisor_start_time_seconds

	mu    sync.Mutex          // guards pools and all
	pools map[string]*poolRun // the current generation, by name
	all   []*poolRun          // every pool whose Run may still be going
	wg    sync.WaitGroup      // pool Run goroutines

	ctl    control
	health chan chan struct{} // the watchdog's probe; the loop closes the reply
}

// poolRun is a pool and the cancel of its Run.
type poolRun struct {
	cfg    *conf.Pool
	pool   *supervisor.Pool
	cancel context.CancelFunc
}

// Run starts the instance and serves until a stop: SIGTERM, SIGINT or
// `fcgivisor stop` drain in-flight requests up to shutdown_timeout, SIGQUIT
// (or a second stop) cuts them; the workers are then stopped and Run
// returns nil. An error means the instance could not start, and nothing it
// opened stays open.
func Run(o Options) error {
	o.applyProcs(o.Config)
	in, err := start(o)
	if err != nil {
		return err
	}
	in.shutdown(in.loop())
	return nil
}

// start brings the instance up to READY=1: runtime dir, users and groups,
// listeners, pools with their initial workers, the admin and status
// endpoints, the front.
func start(o Options) (_ *instance, err error) {
	cfg := o.Config
	hard, kill := context.WithCancel(context.Background())
	in := &instance{
		o:   o,
		log: o.Log,
		// One StatsSet for the instance: a pool's counters go on across
		// the generations reloads start (issue 13).
		env: supervisor.Env{Parent: o.Parent, Logger: o.Log, Getenv: hideSystemd(o.Getenv), Privileged: o.Privileged, Self: o.Self,
			Stats: supervisor.NewStatsSet()},
		started:   time.Now(),
		hard:      hard,
		kill:      kill,
		cfg:       cfg,
		pools:     make(map[string]*poolRun),
		listeners: make(map[string]net.Listener),
		public:    make(map[string]*pubSock),
		stopAdmin: func() {},
		ctl:       control{stops: make(chan struct{}, 1), reloads: make(chan chan error)},
		health:    make(chan chan struct{}),
	}
	defer func() {
		if err != nil {
			in.abort()
		}
	}()
	if in.sd, err = readSystemd(o.Getenv, o.Pid, in.log); err != nil {
		return nil, err
	}
	// Before anything is opened or started: a file check refuses is
	// refused by run at once (issue 10).
	if err := Check(cfg, o.Privileged, o.Getenv, in.log); err != nil {
		return nil, err
	}
	if in.rt, err = socket.OpenRuntimeDir(cfg.Server.RuntimeDir); err != nil {
		return nil, fmt.Errorf("%s: server.runtime_dir: %w", cfg.File, err)
	}
	in.env.Runtime = in.rt
	admin, status, err := in.listen(cfg)
	if err != nil {
		return nil, err
	}
	in.stopAdmin = closeEndpoints(admin, status)
	for _, pc := range cfg.Pools() {
		in.pools[pc.Name] = in.startPool(pc)
	}
	// The admin and status endpoints answer from here until the pools
	// have stopped, so that /status shows the start-up and the drain.
	in.stopAdmin = in.serveEndpoints(admin, status)
	for _, pr := range in.pools {
		<-pr.pool.Ready()
	}
	if in.access, err = openAccess(cfg, o.stderr()); err != nil {
		return nil, err
	}
	in.srv, err = front.New(cfg, poolMap(in.pools), front.Options{
		Log: in.log, Software: "fcgivisor/" + o.Version, Parent: o.Parent, Privileged: o.Privileged,
		AccessLog: in.access.writer(),
	})
	if err != nil {
		return nil, err
	}
	if pf := cfg.Server.PIDFile; pf != "" {
		if err := os.WriteFile(pf, []byte(strconv.Itoa(o.Pid)+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("server.pid_file: %w", err)
		}
		in.pidFile = pf
	}
	in.srv.Serve(slices.Collect(maps.Values(in.listeners)))
	in.servePublic(nil)
	in.log.Info("fcgivisor running", "version", o.Version, "pid", o.Pid, "config", cfg.File,
		"listen", strings.Join(cfg.HTTP.Listen, ","), "public", publicList(cfg), "admin", cfg.Admin.Listen, "status", cfg.Status.Listen, "pools", len(in.pools), "gomaxprocs", runtime.GOMAXPROCS(0))
	in.warnUnusedInherited()
	// READY=1 only now: pools have their initial workers and the front
	// accepts.
	if err := in.sd.notifier.ReadyWithStatus(in.summary()); err != nil {
		in.log.Warn("sd_notify", "err", err)
	}
	return in, nil
}

// listen opens what start listens on: http.listen (passed sockets first)
// into in.listeners, and the admin and status endpoints, which it returns
// (status nil when status.listen is not set). Whatever it opened before
// an error is in in.listeners, for abort.
func (in *instance) listen(cfg *conf.Config) (admin, status net.Listener, err error) {
	perms, errs := resolveListenPerms(cfg, in.o.Privileged)
	if len(errs) > 0 { // CheckPrivileges passed: a user or group just went
		return nil, nil, fmt.Errorf("%s: %w", cfg.File, errors.Join(errs...))
	}
	if in.listeners, err = openListeners(cfg, nil, in.sd.inherited, perms.http); err != nil {
		return nil, nil, err
	}
	if in.public, err = openPublic(cfg, nil, in.sd.inherited, perms.pools); err != nil {
		in.public = make(map[string]*pubSock)
		return nil, nil, err
	}
	return listenEndpoints(cfg, perms.status)
}

// abort undoes a start that failed: workers stop at once, and what was
// opened is closed.
func (in *instance) abort() {
	in.kill()
	in.stopPools()
	in.stopAdmin()
	for _, l := range in.listeners { // start fails before the front serves them
		l.Close()
	}
	closePending(in.public)
	in.access.close()
	if in.rt != nil {
		in.rt.Close()
	}
	in.sd.notifier.Close()
}

// loop serves requests to the running state until a stop, and reports
// whether the stop is immediate.
func (in *instance) loop() (immediate bool) {
	stopWatchdog := in.watchdog()
	defer stopWatchdog()
	for {
		var a signals.Action
		var reply chan error
		select {
		case a = <-in.o.Actions:
		case <-in.ctl.stops:
			a = signals.Stop
		case reply = <-in.ctl.reloads:
			a = signals.Reload
		case r := <-in.health:
			close(r)
			continue
		}
		switch a {
		case signals.Stop, signals.StopNow:
			in.log.Info("stopping", "action", a.String())
			if err := in.sd.notifier.Stopping(); err != nil {
				in.log.Warn("sd_notify", "err", err)
			}
			return a == signals.StopNow
		case signals.Reload:
			err := in.reloadNotify()
			if reply != nil {
				reply <- err
			}
		case signals.Roll:
			in.log.Info("rolling restart of every worker")
			for _, p := range in.poolList() {
				p.Roll()
			}
		case signals.Reopen:
			in.reopenLog()
		}
	}
}

// reloadNotify reloads between RELOADING=1 (MONOTONIC_USEC taken after
// the request) and READY=1: systemctl reload (Type=notify-reload) waits
// for it.
func (in *instance) reloadNotify() error {
	in.sd.notifier.Reloading()
	err := in.reload()
	if err != nil {
		in.log.Error("reload refused; the running config is unchanged", "err", err)
		in.sd.notifier.ReloadFailed(err)
	} else {
		in.sd.notifier.ReadyWithStatus(in.summary())
	}
	return err
}

// reopenLog reopens log_file and a file http.access_log by name
// (SIGUSR1), for logrotate.
func (in *instance) reopenLog() {
	if in.o.LogFile != nil {
		if err := in.o.LogFile.Reopen(); err != nil {
			in.log.Error("reopen log file", "err", err)
		} else {
			in.log.Info("log file reopened")
		}
	}
	switch file, err := in.access.reopen(); {
	case err != nil:
		in.log.Error("reopen access log", "path", string(in.access.target), "err", err)
	case file:
		in.log.Info("access log reopened", "path", string(in.access.target))
	}
}

// stderr is where http.access_log = "stderr" writes.
func (o *Options) stderr() io.Writer {
	if o.Stderr != nil {
		return o.Stderr
	}
	return os.Stderr
}

// shutdown drains the front up to shutdown_timeout (at once when
// immediate), stops every pool and closes what start opened. Meanwhile a
// second stop cuts the drain, and reloads are refused.
func (in *instance) shutdown(immediate bool) {
	drain, cut := context.WithTimeout(context.Background(), in.cfg.Server.ShutdownTimeout)
	defer cut()
	if immediate {
		cut()
		in.kill()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.refuseWhileStopping(done, func() { cut(); in.kill() })
	}()
	var pubErr error
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pubErr = in.shutdownPublic(drain) }()
	if err := in.srv.Shutdown(drain); err != nil {
		in.log.Warn("in-flight requests cut at shutdown", "err", err)
	}
	// Requests cut may still end: they write no more.
	in.srv.SetAccessLog(nil, "")
	in.access.close()
	<-pubDone
	if pubErr != nil {
		in.log.Warn("in-flight requests on public sockets cut at shutdown", "err", pubErr)
	}
	in.stopPools()
	in.stopAdmin()
	close(done)
	wg.Wait()
	if in.pidFile != "" {
		os.Remove(in.pidFile)
	}
	in.rt.Close()
	in.kill()
	in.log.Info("stopped")
	in.sd.notifier.Close()
}

// refuseWhileStopping answers the loop's requests during shutdown, until
// done: a stop signal calls now, a reload is refused.
func (in *instance) refuseWhileStopping(done <-chan struct{}, now func()) {
	actions := in.o.Actions
	for {
		select {
		case <-done:
			return
		case a, ok := <-actions:
			if !ok {
				actions = nil
				continue
			}
			if a == signals.Stop || a == signals.StopNow {
				in.log.Info("stopping immediately", "signal", a.String())
				now()
			}
		case reply := <-in.ctl.reloads:
			reply <- errors.New("fcgivisor is stopping")
		}
	}
}

func (in *instance) startPool(pc *conf.Pool) *poolRun {
	ctx, cancel := context.WithCancel(context.Background())
	pr := &poolRun{cfg: pc, pool: supervisor.NewPool(pc, in.env), cancel: cancel}
	in.wg.Add(1)
	go func() { defer in.wg.Done(); pr.pool.Run(ctx, in.hard) }()
	in.mu.Lock()
	in.all = append(in.all, pr)
	in.mu.Unlock()
	return pr
}

// statusPools is what the admin and status endpoints show: the current
// generation, sorted by name, then every other pool whose Run is still
// going (generations draining after a reload, or starting in one), so
// that a request in flight on a draining generation is seen (issue 13).
func (in *instance) statusPools() []*supervisor.Pool {
	in.mu.Lock()
	defer in.mu.Unlock()
	ps := make([]*supervisor.Pool, 0, len(in.all))
	current := make(map[*poolRun]bool, len(in.pools))
	for _, name := range slices.Sorted(maps.Keys(in.pools)) {
		ps = append(ps, in.pools[name].pool)
		current[in.pools[name]] = true
	}
	for _, pr := range in.all {
		if current[pr] {
			continue
		}
		select {
		case <-pr.pool.Done():
		default:
			ps = append(ps, pr.pool)
		}
	}
	return ps
}

// poolList is the current generation.
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
	in.mu.Lock()
	all := slices.Clone(in.all)
	in.mu.Unlock()
	for _, pr := range all {
		pr.cancel()
	}
	in.wg.Wait()
}

// summary is the one-line STATUS= for systemd.
func (in *instance) summary() string {
	workers := 0
	for _, p := range in.poolList() {
		workers += len(p.Status().Workers)
	}
	return fmt.Sprintf("%d pools, %d workers, listening on %s", len(in.cfg.Pools()), workers, strings.Join(in.cfg.HTTP.Listen, ", "))
}

// CheckPrivileges checks cfg's users and groups as Run applies them when
// fcgivisor runs as root (privileged) or not: pools' and cgi routes' user
// and group, and the listen_owner and listen_group of [http] and
// [status]. Check runs it, for `fcgivisor check`, start and reload.
func CheckPrivileges(cfg *conf.Config, privileged bool, log *slog.Logger) error {
	var errs []error
	for _, pc := range cfg.Pools() {
		if err := supervisor.CheckPrivileges(pc, privileged, log); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cfg.File, err))
		}
	}
	for _, err := range front.CheckPrivileges(cfg, privileged, log) {
		errs = append(errs, fmt.Errorf("%s: %w", cfg.File, err))
	}
	_, permErrs := resolveListenPerms(cfg, privileged)
	for _, err := range permErrs {
		errs = append(errs, fmt.Errorf("%s: %w", cfg.File, err))
	}
	return errors.Join(errs...)
}
