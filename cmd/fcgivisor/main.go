// Command fcgivisor is a FastCGI process manager: it preforks and
// supervises pools of FastCGI workers of any language and fronts them with
// a small HTTP server. See DESIGN.md and the README.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/signals"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
	"github.com/fcgivisor/fcgivisor/systemd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	if len(os.Args) > 1 && os.Args[1] == spawner.LimitsArg {
		// A worker being started with rlimits (spawner.WithLimits).
		err := spawner.ExecWithLimits(os.Args[2:])
		fmt.Fprintln(os.Stderr, "fcgivisor:", err)
		os.Exit(127)
	}
	app := &cli.App{
		Name:  "fcgivisor",
		Usage: "FastCGI process manager for any language",
		Flags: nil,
		Commands: []*cli.Command{
			{
				Name:   "run",
				Usage:  "run in the foreground (the systemd ExecStart)",
				Flags:  []cli.Flag{configFlag()},
				Action: func(c *cli.Context) error { return run(configPath(c)) },
			},
			{
				Name:   "check",
				Usage:  "validate the config; print every error and exit 1, or a summary and exit 0",
				Flags:  []cli.Flag{configFlag()},
				Action: func(c *cli.Context) error { return check(c.App.Writer, configPath(c)) },
			},
			{
				Name:  "status",
				Usage: "show the pools and workers of the running instance",
				Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print the status JSON as the admin endpoint sends it"}},
				Action: func(c *cli.Context) error {
					return status(c.App.Writer, configPath(c), c.Bool("json"))
				},
			},
			{
				Name:   "reload",
				Usage:  "ask the running instance to reload its config; exit 1 if it refused the new config",
				Flags:  []cli.Flag{configFlag()},
				Action: func(c *cli.Context) error { return adminCommand(c.App.Writer, configPath(c), "/reload") },
			},
			{
				Name:   "stop",
				Usage:  "stop the running instance gracefully (as SIGTERM)",
				Flags:  []cli.Flag{configFlag()},
				Action: func(c *cli.Context) error { return adminCommand(c.App.Writer, configPath(c), "/stop") },
			},
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "fcgivisor %s (%s)\n", fullVersion(), runtime.Version())
					return nil
				},
			},
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "fcgivisor:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config `FILE` (default $FCGIVISOR_CONFIG, ./fcgivisor.toml, /etc/fcgivisor/fcgivisor.toml)"}
}

// configPath applies the lookup order of DESIGN.md: -c, $FCGIVISOR_CONFIG,
// ./fcgivisor.toml, /etc/fcgivisor/fcgivisor.toml.
func configPath(c *cli.Context) string {
	if p := c.String("config"); p != "" {
		return p
	}
	if p := os.Getenv("FCGIVISOR_CONFIG"); p != "" {
		return p
	}
	if _, err := os.Stat("fcgivisor.toml"); err == nil {
		return "fcgivisor.toml"
	}
	return "/etc/fcgivisor/fcgivisor.toml"
}

func fullVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func check(w io.Writer, path string) error {
	cfg, err := conf.Load(path)
	if err != nil {
		fmt.Fprintln(w, err)
		return &exitError{code: 1, err: errors.New("config is invalid")}
	}
	// Users and groups as `run` would apply them, running as this user
	// (as root, a pool or cgi route must name its user, and it must exist).
	warn := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := checkPrivileges(cfg, os.Geteuid() == 0, warn); err != nil {
		fmt.Fprintln(w, err)
		return &exitError{code: 1, err: errors.New("config is invalid")}
	}
	fmt.Fprintln(w, cfg.Summary())
	return nil
}

// newLogger builds the one logger of the process from [server]. With a
// log_file, the returned logFile reopens it on SIGUSR1 (logrotate).
func newLogger(s *conf.Server) (*slog.Logger, *logFile, error) {
	var out io.Writer = os.Stderr
	var lf *logFile
	if s.LogFile != "" {
		lf = &logFile{path: s.LogFile}
		if err := lf.Reopen(); err != nil {
			return nil, nil, fmt.Errorf("server.log_file: %w", err)
		}
		out = lf
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, nil, fmt.Errorf("server.log_level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if s.LogFormat == "json" {
		h = slog.NewJSONHandler(out, opts)
	} else {
		h = slog.NewTextHandler(out, opts)
	}
	return slog.New(h), lf, nil
}

// logFile is the log_file, reopened by name on SIGUSR1 so that logrotate
// can move it away.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path anew and closes the previous file.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file; nil-safe.
func (l *logFile) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// control turns admin requests into requests to run's loop.
type control struct {
	stop    chan struct{}   // buffered 1
	reloads chan chan error // a reload request and where its outcome goes
}

func (c control) Stop() {
	select {
	case c.stop <- struct{}{}:
	default:
	}
}

// Reload asks run's loop to reload and waits for the outcome.
func (c control) Reload() error {
	reply := make(chan error, 1)
	c.reloads <- reply
	return <-reply
}

// run is `fcgivisor run`: start pools, then the front; reload on SIGHUP or
// `fcgivisor reload`; on SIGTERM/SIGINT drain in-flight requests up to
// shutdown_timeout, stop the workers, exit 0.
func run(path string) error {
	cfg, err := conf.Load(path)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("%s\nconfig is invalid", err)}
	}
	log, logFile, err := newLogger(&cfg.Server)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer logFile.Close()

	// systemd: read its variables once, then unset them so that nothing
	// (not even inherit_env) passes them on to a worker.
	notifier, err := systemd.NewNotifier(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		log.Warn("sd_notify disabled", "err", err)
		notifier, _ = systemd.NewNotifier("")
	}
	defer notifier.Close()
	wdEvery, wdOn := systemd.WatchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	inherited, err := systemd.Inherited(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("socket activation: %w", err)}
	}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID", "WATCHDOG_USEC", "WATCHDOG_PID", "NOTIFY_SOCKET"} {
		os.Unsetenv(k)
	}

	// Orphaned grandchildren of workers are reparented to us, not to init,
	// and reaped by the Reaper; workers never outlive fcgivisor.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("become child subreaper: %w", err)}
	}
	rt, err := socket.OpenRuntimeDir(cfg.Server.RuntimeDir)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer rt.Close()

	listeners, err := openListeners(cfg, nil, inherited)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	adminListener, err := listenAdmin(cfg)
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return &exitError{code: 1, err: err}
	}

	reaper, err := spawner.NewReaper()
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	reaperCtx, stopReaper := context.WithCancel(context.Background())
	var reaperDone sync.WaitGroup
	reaperDone.Add(1)
	go func() { defer reaperDone.Done(); reaper.Run(reaperCtx) }()
	defer func() { stopReaper(); reaperDone.Wait() }()

	self, err := os.Executable()
	if err != nil {
		log.Warn("rlimit_nofile cannot be applied: fcgivisor cannot find its own executable", "err", err)
	}
	hardCtx, stopHard := context.WithCancel(context.Background())
	defer stopHard()
	in := &instance{
		path:      path,
		log:       log,
		env:       supervisor.Env{Reaper: reaper, Runtime: rt, Logger: log, Getenv: os.LookupEnv, Privileged: os.Geteuid() == 0, Self: self},
		hard:      hardCtx,
		cfg:       cfg,
		listeners: listeners,
		inherited: inherited,
		pools:     make(map[string]*poolRun),
	}
	if err := checkPrivileges(cfg, in.env.Privileged, in.log); err != nil {
		stopHard()
		return &exitError{code: 1, err: err}
	}
	for _, pc := range cfg.Pools() {
		in.pools[pc.Name] = in.startPool(pc)
	}
	// The admin endpoint answers from here until the pools have stopped, so
	// that /status shows the start-up and the drain.
	ctl := control{stop: make(chan struct{}, 1), reloads: make(chan chan error)}
	stopAdmin := serveAdmin(adminListener, front.NewAdmin(in.poolList, ctl, log), log)
	defer stopAdmin()
	for _, pr := range in.pools {
		<-pr.pool.Ready()
	}

	in.srv, err = front.New(cfg, poolMap(in.pools), front.Options{
		Log: log, Software: "fcgivisor/" + fullVersion(), Reaper: reaper, Privileged: in.env.Privileged,
	})
	if err != nil {
		stopHard()
		in.stopPools()
		return &exitError{code: 1, err: err}
	}
	sigCtx, stopSignals := context.WithCancel(context.Background())
	defer stopSignals()
	actions := signals.Notify(sigCtx)
	if pf := cfg.Server.PIDFile; pf != "" {
		if err := os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			stopHard()
			in.stopPools()
			return &exitError{code: 1, err: fmt.Errorf("server.pid_file: %w", err)}
		}
		defer os.Remove(pf)
	}
	in.srv.Serve(slices.Collect(maps.Values(listeners)))
	log.Info("fcgivisor running", "version", fullVersion(), "pid", os.Getpid(), "config", cfg.File,
		"listen", strings.Join(cfg.HTTP.Listen, ","), "admin", cfg.Admin.Listen, "pools", len(in.pools))
	for _, l := range inherited {
		if _, ok := in.listeners[mustKey(l)]; !ok {
			log.Warn("a socket passed by systemd matches no http.listen address", "name", l.Name, "addr", l.Addr)
		}
	}
	// READY=1 only now: pools have their initial workers and the front
	// accepts.
	if err := notifier.ReadyWithStatus(in.summary()); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	health := make(chan chan struct{})
	wdCtx, stopWatchdog := context.WithCancel(context.Background())
	var wdDone sync.WaitGroup
	if wdOn {
		wdDone.Add(1)
		go func() {
			defer wdDone.Done()
			// Healthy: the supervisor loop answers within half the interval.
			systemd.RunWatchdog(wdCtx, notifier, wdEvery, func() bool {
				reply := make(chan struct{})
				t := time.NewTimer(wdEvery / 2)
				defer t.Stop()
				select {
				case health <- reply:
				case <-t.C:
					return false
				case <-wdCtx.Done():
					return false
				}
				select {
				case <-reply:
					return true
				case <-t.C:
					return false
				}
			})
		}()
	}
	defer func() { stopWatchdog(); wdDone.Wait() }()

	immediate := false
loop:
	for {
		var a signals.Action
		var reply chan error
		select {
		case a = <-actions:
		case <-ctl.stop:
			a = signals.Stop
		case reply = <-ctl.reloads:
			a = signals.Reload
		case r := <-health:
			close(r)
			continue
		}
		switch a {
		case signals.Stop, signals.StopNow:
			immediate = a == signals.StopNow
			log.Info("stopping", "action", a.String())
			if err := notifier.Stopping(); err != nil {
				log.Warn("sd_notify", "err", err)
			}
			break loop
		case signals.Reload:
			// RELOADING=1 with MONOTONIC_USEC taken after the signal, then
			// READY=1: systemctl reload (Type=notify-reload) waits for it.
			notifier.Reloading()
			err := in.reload()
			if err != nil {
				log.Error("reload refused; the running config is unchanged", "err", err)
				notifier.ReloadFailed(err)
			} else {
				notifier.ReadyWithStatus(in.summary())
			}
			if reply != nil {
				reply <- err
			}
		case signals.Roll:
			log.Info("rolling restart of every worker")
			for _, p := range in.poolList() {
				p.Roll()
			}
		case signals.Reopen:
			if logFile != nil {
				if err := logFile.Reopen(); err != nil {
					log.Error("reopen log file", "err", err)
				} else {
					log.Info("log file reopened")
				}
			}
		}
	}

	drainCtx, cancelDrain := context.WithTimeout(context.Background(), in.cfg.Server.ShutdownTimeout)
	defer cancelDrain()
	if immediate {
		cancelDrain()
		stopHard()
	}
	// A second TERM/INT, or a QUIT, during the drain stops at once; reload
	// requests are refused.
	go func() {
		for {
			select {
			case a, ok := <-actions:
				if !ok {
					return
				}
				if a == signals.Stop || a == signals.StopNow {
					log.Info("stopping immediately", "signal", a.String())
					cancelDrain()
					stopHard()
				}
			case reply := <-ctl.reloads:
				reply <- errors.New("fcgivisor is stopping")
			}
		}
	}()
	if err := in.srv.Shutdown(drainCtx); err != nil {
		log.Warn("in-flight requests cut at shutdown", "err", err)
	}
	in.stopPools()
	stopAdmin()
	stopSignals()
	log.Info("stopped")
	return nil
}

// listenAdmin opens admin.listen before any worker starts. A Unix socket
// gets mode 0600: the admin endpoint is for fcgivisor's own user (and root).
func listenAdmin(cfg *conf.Config) (net.Listener, error) {
	network, address, err := conf.ParseAddr(cfg.Admin.Listen)
	if err == nil {
		var l net.Listener
		if l, err = socket.Listen(network, address, 0o600); err == nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("admin.listen %q: %w", cfg.Admin.Listen, err)
}

// serveAdmin serves h on l with its own http.Server; the returned func
// (idempotent) shuts it down and waits for it.
func serveAdmin(l net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "addr", l.Addr().String(), "err", err)
		}
	}()
	return sync.OnceFunc(func() {
		// Admin answers are small: give those in progress a moment, then cut.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	})
}

// status is `fcgivisor status`: GET /status from the running instance and
// print it as a table, or as the JSON received.
func status(w io.Writer, path string, asJSON bool) error {
	addr, err := conf.AdminAddress(path)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	body, err := adminGet(addr, "/status")
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if asJSON {
		_, err := w.Write(body)
		return err
	}
	var doc front.AdminStatus
	if err := json.Unmarshal(body, &doc); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("fcgivisor at %s answered /status with something that is not status JSON: %w", addr, err)}
	}
	writeStatusTable(w, &doc)
	return nil
}

// adminGet GETs path from the admin endpoint at addr ("unix:/path" or
// "host:port") and returns the body of a 200 answer.
func adminGet(addr, path string) ([]byte, error) { return adminDo(http.MethodGet, addr, path) }

// adminCommand is `fcgivisor stop` and `fcgivisor reload`: a POST to the
// admin endpoint, whose answer is printed.
//
// The running instance is found through admin.listen even when the file is
// otherwise invalid: a reload of an invalid file is the instance's to
// refuse, with every error, and a stop must work whatever the file says.
func adminCommand(w io.Writer, path, endpoint string) error {
	addr, err := conf.AdminAddress(path)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	body, err := adminDo(http.MethodPost, addr, endpoint)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	fmt.Fprint(w, string(body))
	return nil
}

// adminDo sends a request to the running instance's admin endpoint.
func adminDo(method, addr, path string) ([]byte, error) {
	network, address, err := conf.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	var d net.Dialer
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{ // no Proxy: never via $http_proxy
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, address)
			},
			DisableKeepAlives: true,
		},
	}
	req, err := http.NewRequest(method, "http://fcgivisor-admin"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		switch {
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("cannot reach fcgivisor at %s: permission denied (the admin socket has mode 0600: run this as the user fcgivisor runs as, or as root)", addr)
		case errors.As(err, &op) && op.Op == "dial":
			return nil, fmt.Errorf("cannot reach fcgivisor at %s: is it running? (%v)", addr, op.Err)
		}
		return nil, fmt.Errorf("cannot reach fcgivisor at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the answer of fcgivisor at %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fcgivisor at %s answered %s %s with %s: %s", addr, method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// writeStatusTable prints one block per pool: a headline (name, mode,
// state, workers, queue), the totals, and a row per worker.
func writeStatusTable(w io.Writer, doc *front.AdminStatus) {
	if len(doc.Pools) == 0 {
		fmt.Fprintln(w, "no pools")
		return
	}
	for i, p := range doc.Pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		live, retiring := 0, 0
		for _, ws := range p.Workers {
			if ws.State == "retiring" {
				retiring++
			} else {
				live++
			}
		}
		fmt.Fprintf(w, "pool %s (%s, %s): workers %d/%d", printable(p.Name), p.Mode, p.State, live, p.MaxWorkers)
		if retiring > 0 {
			fmt.Fprintf(w, " +%d retiring", retiring)
		}
		fmt.Fprintf(w, ", slots %d busy %d idle, queue %d", p.BusySlots, p.IdleSlots, p.Queue)
		if p.Queue > 0 {
			fmt.Fprintf(w, " (oldest %.1fs)", p.OldestQueuedSeconds)
		}
		fmt.Fprintln(w)

		t := p.Totals
		var recycled int64
		var causes []string
		for _, c := range slices.Sorted(maps.Keys(t.Recycled)) {
			recycled += t.Recycled[c]
			causes = append(causes, fmt.Sprintf("%s %d", c, t.Recycled[c]))
		}
		fmt.Fprintf(w, "  totals: accepted %d, 5xx %d, timeouts %d, spawns %d, exits %d, recycled %d", t.Accepted, t.Responses5xx, t.Timeouts, t.Spawns, t.Exits, recycled)
		if len(causes) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(causes, ", "))
		}
		fmt.Fprintf(w, ", max_workers reached %d", t.MaxWorkersReached)
		if t.CGIFallbacks > 0 || t.CGIFallbacksRefused > 0 {
			fmt.Fprintf(w, ", cgi fallbacks %d (refused %d)", t.CGIFallbacks, t.CGIFallbacksRefused)
		}
		fmt.Fprintln(w)
		if len(t.Responses) > 0 {
			var codes []string
			for _, c := range slices.Sorted(maps.Keys(t.Responses)) {
				codes = append(codes, fmt.Sprintf("%d: %d", c, t.Responses[c]))
			}
			fmt.Fprintf(w, "  responses: %s\n", strings.Join(codes, ", "))
		}
		if p.LastExit != "" {
			fmt.Fprintf(w, "  last exit: %s\n", printable(p.LastExit))
		}
		if p.LastStderr != "" {
			fmt.Fprintf(w, "  last stderr: %s\n", printable(p.LastStderr))
		}

		if len(p.Workers) == 0 {
			fmt.Fprintln(w, "  no workers")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PID\tSTATE\tREQUESTS\tAGE\tRSS\tREQUEST")
		for _, ws := range p.Workers {
			rss, req := "-", "-"
			if ws.RSSBytes > 0 {
				rss = fmt.Sprintf("%.1f MiB", float64(ws.RSSBytes)/(1<<20))
			}
			if ws.Request != nil {
				req = fmt.Sprintf("%s (%.1fs)", printable(ws.Request.URI), ws.Request.Seconds)
			}
			age := time.Duration(ws.AgeSeconds * float64(time.Second)).Round(time.Second)
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\t%s\n", ws.Pid, ws.State, ws.Requests, age, rss, req)
		}
		tw.Flush()
	}
}

// printable returns s, or s quoted when it holds characters that are not
// printable: request URIs and worker output must not drive the terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// mustKey is the listener key of an inherited socket ("" when it has no
// usable address).
func mustKey(l systemd.Listener) string {
	if l.Network != "tcp" && l.Network != "unix" {
		return ""
	}
	addr := l.Addr
	if l.Network == "unix" {
		addr = "unix:" + addr
	}
	k, _ := listenerKey(addr)
	return k
}
