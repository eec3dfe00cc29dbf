// Command fcgivisor is a FastCGI process manager: it preforks and
// supervises pools of FastCGI workers of any language and fronts them with
// a small HTTP server. See DESIGN.md and the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/signals"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
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
	fmt.Fprintln(w, cfg.Summary())
	return nil
}

// newLogger builds the one logger of the process from [server].
func newLogger(s *conf.Server) (*slog.Logger, io.Closer, error) {
	var out io.Writer = os.Stderr
	var closer io.Closer = io.NopCloser(nil)
	if s.LogFile != "" {
		f, err := os.OpenFile(s.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("server.log_file: %w", err)
		}
		out, closer = f, f
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
	return slog.New(h), closer, nil
}

// run is `fcgivisor run`: start pools, then the front; on SIGTERM/SIGINT
// drain in-flight requests up to shutdown_timeout, stop the workers, exit 0.
func run(path string) error {
	cfg, err := conf.Load(path)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("%s\nconfig is invalid", err)}
	}
	log, logCloser, err := newLogger(&cfg.Server)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer logCloser.Close()

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

	listeners, err := listen(cfg)
	if err != nil {
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

	env := supervisor.Env{Reaper: reaper, Runtime: rt, Logger: log, Getenv: os.LookupEnv}
	poolCtx, stopPools := context.WithCancel(context.Background())
	hardCtx, stopHard := context.WithCancel(context.Background())
	defer stopHard()
	pools := make(map[string]*supervisor.Pool)
	var poolsDone sync.WaitGroup
	for _, pc := range cfg.Pools() {
		p := supervisor.NewPool(pc, env)
		pools[pc.Name] = p
		poolsDone.Add(1)
		go func() { defer poolsDone.Done(); p.Run(poolCtx, hardCtx) }()
	}
	stopAllPools := func() { stopPools(); poolsDone.Wait() }
	for _, p := range pools {
		<-p.Ready()
	}

	srv, err := front.New(cfg, pools, log, "fcgivisor/"+fullVersion())
	if err != nil {
		stopHard()
		stopAllPools()
		return &exitError{code: 1, err: err}
	}
	sigCtx, stopSignals := context.WithCancel(context.Background())
	defer stopSignals()
	actions := signals.Notify(sigCtx)
	srv.Serve(listeners)
	log.Info("fcgivisor running", "version", fullVersion(), "pid", os.Getpid(), "config", cfg.File,
		"listen", strings.Join(cfg.HTTP.Listen, ","), "pools", len(pools))

	// Wait for a stop signal; other actions come with later issues.
	var immediate bool
	for a := range actions {
		if a == signals.Stop || a == signals.StopNow {
			immediate = a == signals.StopNow
			log.Info("stopping", "signal", a.String())
			break
		}
		log.Warn("signal action not supported yet", "action", a.String())
	}

	drainCtx, cancelDrain := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancelDrain()
	if immediate {
		cancelDrain()
		stopHard()
	}
	// A second TERM/INT, or a QUIT, during the drain stops at once.
	go func() {
		for a := range actions {
			if a == signals.Stop || a == signals.StopNow {
				log.Info("stopping immediately", "signal", a.String())
				cancelDrain()
				stopHard()
				return
			}
		}
	}()
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn("in-flight requests cut at shutdown", "err", err)
	}
	stopAllPools()
	stopSignals()
	log.Info("stopped")
	return nil
}

// listen opens every http.listen address before any worker starts, so that
// an address in use fails the start at once.
func listen(cfg *conf.Config) ([]net.Listener, error) {
	var ls []net.Listener
	for i, a := range cfg.HTTP.Listen {
		network, address, err := conf.ParseAddr(a)
		if err == nil {
			var l net.Listener
			l, err = socket.Listen(network, address, 0o666)
			if err == nil {
				ls = append(ls, l)
				continue
			}
		}
		for _, l := range ls {
			l.Close()
		}
		return nil, fmt.Errorf("http.listen[%d] %q: %w", i, a, err)
	}
	return ls, nil
}
