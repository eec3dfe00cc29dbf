// Command fcgivisor is a FastCGI process manager: it preforks and
// supervises pools of FastCGI workers of any language and fronts them with
// a small HTTP server. The daemon itself is package daemon; this command
// holds the CLI, the logger, the admin client and the exit codes. See
// docs/design.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/daemon"
	"github.com/fcgivisor/fcgivisor/signals"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
		Commands: []*cli.Command{
			command("run", "run in the foreground (the systemd ExecStart)",
				func(c *cli.Context, path string) error { return run(path) }),
			command("check", "validate the config; print every error and exit 1, or a summary (with --dump, the effective config) and exit 0",
				func(c *cli.Context, path string) error { return check(c.App.Writer, path, c.Bool("dump")) },
				&cli.BoolFlag{Name: "dump", Usage: "print the effective config as TOML, every default filled in and paths made absolute; check accepts it as it is"}),
			command("status", "show the pools and workers of the running instance",
				func(c *cli.Context, path string) error { return status(c.App.Writer, path, c.Bool("json")) },
				&cli.BoolFlag{Name: "json", Usage: "print the status JSON as the admin endpoint sends it"}),
			command("reload", "ask the running instance to reload its config; exit 1 if it refused the new config",
				func(c *cli.Context, path string) error { return adminCommand(c.App.Writer, path, "/reload") }),
			command("stop", "stop the running instance gracefully (as SIGTERM)",
				func(c *cli.Context, path string) error { return adminCommand(c.App.Writer, path, "/stop") }),
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
	// Shell completion (completion.go) asks the binary what may come next:
	// --generate-bash-completion as the last argument lists the commands,
	// or a command's flags, instead of running anything.
	app.Commands = append(app.Commands, completionCommand(), manpageCommand())
	enableCompletion(app)
	// Every error exits 1: an invalid config, a start that failed, an
	// instance that cannot be reached or refused a reload.
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "fcgivisor:", err)
		os.Exit(1)
	}
}

// command is a subcommand that takes -c; action gets the config path.
func command(name, usage string, action func(c *cli.Context, path string) error, flags ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:   name,
		Usage:  usage,
		Flags:  append([]cli.Flag{configFlag()}, flags...),
		Action: func(c *cli.Context) error { return action(c, configPath(c)) },
	}
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config `FILE` (default $FCGIVISOR_CONFIG, ./fcgivisor.toml, /etc/fcgivisor/fcgivisor.toml)"}
}

// configPath applies the lookup order of docs/configuration.md: -c, $FCGIVISOR_CONFIG,
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

// check is `fcgivisor check`: the file, then what `run` would refuse
// running as this user (daemon.Check: users and groups, commands,
// directories, runtime_dir). With dump, a valid file is printed as
// conf.Config.Dump writes it, after the summary as a comment, so that the
// output is a config file (as nginx -T, php-fpm -tt).
func check(w io.Writer, path string, dump bool) error {
	cfg, err := conf.Load(path)
	if err == nil {
		warn := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		err = daemon.Check(cfg, os.Geteuid() == 0, os.LookupEnv, warn)
	}
	if err != nil {
		fmt.Fprintln(w, err)
		return errors.New("config is invalid")
	}
	if !dump {
		fmt.Fprintln(w, cfg.Summary())
		return nil
	}
	fmt.Fprintf(w, "# %s\n# The effective config (fcgivisor check --dump): every default filled in, paths absolute.\n\n",
		strings.ReplaceAll(cfg.Summary(), "\n", " "))
	return cfg.Dump(w)
}

// newLogger builds the one logger of the process from [server]. With a
// log_file, the returned LogFile reopens it on SIGUSR1 (logrotate).
func newLogger(s *conf.Server) (*slog.Logger, *daemon.LogFile, error) {
	var out io.Writer = os.Stderr
	var lf *daemon.LogFile
	if s.LogFile != "" {
		var err error
		if lf, err = daemon.OpenLogFile(s.LogFile); err != nil {
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

// run is `fcgivisor run`: it sets what is the process's to set (the
// logger, the subreaper flag, the one Parent, signal delivery) and runs
// the daemon until it stops.
// gcPercent is the GC's target (GOGC) when fcgivisor's environment sets
// none. Under load fcgivisor's live heap is under 1 MB, so Go's heap goal
// is its minimum, 4 MB x GOGC/100: 75 takes a MB off the peak RSS (front
// with a pool of 4 under 32 clients: 14.0 against 14.9-15.1 MiB) for a few
// percent more GC work, within the noise of the same runs' req/s
// (bench/README.md).
const gcPercent = 75

func run(path string) error {
	cfg, err := conf.Load(path)
	if err != nil {
		return fmt.Errorf("%s\nconfig is invalid", err)
	}
	log, logFile, err := newLogger(&cfg.Server)
	if err != nil {
		return err
	}
	defer logFile.Close()
	o := daemon.Options{
		Path: path, Config: cfg, Log: log, LogFile: logFile, Version: fullVersion(),
		Getenv: os.LookupEnv, Privileged: os.Geteuid() == 0, Pid: os.Getpid(),
		SetProcs: runtime.GOMAXPROCS, CPUs: runtime.GOMAXPROCS(0),
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	// Orphaned grandchildren of workers are reparented to us, not to init,
	// and reaped by the Parent; workers never outlive fcgivisor.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	if o.Parent, err = spawner.NewParent(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); o.Parent.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	o.Actions = signals.Notify(ctx)
	if o.Self, err = os.Executable(); err != nil {
		log.Warn("rlimit_nofile cannot be applied: fcgivisor cannot find its own executable", "err", err)
	}
	return daemon.Run(o)
}
