package conf

import (
	"io/fs"
	"time"
)

// Config is a validated configuration. Treat it as read-only once Load
// returns it.
type Config struct {
	// File is the path the config was read from, as given to Load (or the
	// name given to Parse).
	File string `toml:"-"`

	Server Server           `toml:"server"`
	Admin  Admin            `toml:"admin"`
	Status Status           `toml:"status"`
	HTTP   HTTP             `toml:"http"`
	Pool   map[string]*Pool `toml:"pool"`
}

// Server is the [server] table.
type Server struct {
	RuntimeDir      string        `toml:"runtime_dir"`      // default /run/fcgivisor
	PIDFile         string        `toml:"pid_file"`         // default ""
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"` // default 30s
	LogLevel        string        `toml:"log_level"`        // debug|info|warn|error, default info
	LogFormat       string        `toml:"log_format"`       // text|json, default text
	LogFile         string        `toml:"log_file"`         // "" = stderr
	// MaxProcs is GOMAXPROCS, the CPUs fcgivisor's own Go code runs on at
	// once; 0 = GOMAXPROCS from the environment when set, else half the
	// CPUs fcgivisor may use, rounded up (daemon.Procs).
	MaxProcs int `toml:"max_procs"`
}

// Admin is the [admin] table: the control endpoint (reload, stop, and
// everything Status serves).
type Admin struct {
	// Listen is "unix:/path" or "host:port"; default "unix:" + runtime_dir + "/admin.sock".
	// After Load a Unix address always reads "unix:/absolute/path", and
	// a TCP address has a loopback IP as its host.
	Listen string `toml:"listen"`
}

// Status is the [status] table: the read-only endpoint (/status,
// /metrics, /ping), for monitoring from other hosts.
type Status struct {
	Listen      string   `toml:"listen"`      // "" = none; a Unix address reads "unix:/absolute/path" after Load
	ListenMode  FileMode `toml:"listen_mode"` // Unix listen only; default 0660
	ListenOwner string   `toml:"listen_owner"`
	ListenGroup string   `toml:"listen_group"`
}

// HTTP is the [http] table.
type HTTP struct {
	Listen            []string      `toml:"listen"`              // default ["127.0.0.1:8080"]; "unix:/path" too; [] = no HTTP server
	ListenMode        FileMode      `toml:"listen_mode"`         // Unix addresses of Listen; default 0660
	ListenOwner       string        `toml:"listen_owner"`        // "" = fcgivisor's user
	ListenGroup       string        `toml:"listen_group"`        // "" = fcgivisor's group
	DocumentRoot      string        `toml:"document_root"`       // default /srv/www
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"` // default 10s
	IdleTimeout       time.Duration `toml:"idle_timeout"`        // default 60s
	// SendTimeout bounds each write of a worker's or CGI program's
	// response to the client (nginx's send_timeout): a client that stops
	// reading is cut after it, and the worker slot or CGI place freed.
	// Default 60s; 0 = none.
	SendTimeout    time.Duration `toml:"send_timeout"`
	MaxHeaderBytes int           `toml:"max_header_bytes"` // default 65536
	MaxConnections int           `toml:"max_connections"`  // per listener; 0 = no limit (default)
	MaxBodyBytes   Size          `toml:"max_body_bytes"`   // default 64MiB
	// AccessLog is where the access log goes: "" (none), "stderr", or
	// an absolute file path (Load resolves a relative one). The boolean
	// of earlier versions is read too: true is "stderr", false "".
	AccessLog       LogTarget `toml:"access_log"`
	AccessLogFormat string    `toml:"access_log_format"` // combined|json, default combined
	// RequestBuffering: read a request body whole (memory, then a
	// temporary file) before a worker slot or CGI place is taken, as
	// nginx's fastcgi_request_buffering; false streams it. Default true.
	RequestBuffering bool     `toml:"request_buffering"`
	Routes           []*Route `toml:"route"`
}

// Route is one [[http.route]]; the first match in file order wins.
type Route struct {
	Prefix string `toml:"prefix"` // default "/"
	Suffix string `toml:"suffix"`
	Index  string `toml:"index"`
	Script string `toml:"script"`

	// Exactly one target is set: Pool, CGI, Static, or Status (a status
	// route answers every request it matches with this status: 403, 404,
	// 410 or 451).
	Pool   string `toml:"pool"`
	CGI    string `toml:"cgi"`
	Static string `toml:"static"`
	Status int    `toml:"status"`

	// Static routes only: paths under the directory never served (404,
	// and no later route is tried); see docs/configuration.md for the
	// syntax.
	Deny []string `toml:"deny"`

	// CGI routes only, but User, which static routes take too (Load
	// refuses them on other routes, which keep zero values). Static
	// routes serve only files User could read.
	Timeout       time.Duration `toml:"timeout"`        // default 60s
	MaxConcurrent int           `toml:"max_concurrent"` // default 32
	User          string        `toml:"user"`
	Group         string        `toml:"group"`
	// Env, on cgi and pool routes, is added to the meta-variables (which
	// win on a clash): a cgi script's environment, a pool's PARAMS.
	Env map[string]string `toml:"env"`
}

// Scaling is a pool's scaling mode.
type Scaling string

// Scaling modes.
const (
	Static   Scaling = "static"
	Dynamic  Scaling = "dynamic"
	OnDemand Scaling = "ondemand"
)

// Pool is one [pool.NAME] table.
type Pool struct {
	Name string `toml:"-"` // the NAME of [pool.NAME]

	Command        []string          `toml:"command"`
	Dir            string            `toml:"dir"`
	Env            map[string]string `toml:"env"`
	InheritEnv     []string          `toml:"inherit_env"`
	User           string            `toml:"user"`
	Group          string            `toml:"group"`
	Scaling        Scaling           `toml:"scaling"`         // default static
	Workers        int               `toml:"workers"`         // default 1
	MinWorkers     int               `toml:"min_workers"`     // default 0; always 0 for ondemand after Load (its floor)
	MaxWorkers     int               `toml:"max_workers"`     // default workers (static) or 16
	MinIdle        int               `toml:"min_idle"`        // default 1
	MaxIdle        int               `toml:"max_idle"`        // default 3
	IdleTimeout    time.Duration     `toml:"idle_timeout"`    // default 10s
	Concurrency    int               `toml:"concurrency"`     // default 1
	MaxRequests    int               `toml:"max_requests"`    // 0 = never recycle
	MaxLifetime    time.Duration     `toml:"max_lifetime"`    // 0 = never recycle
	MaxMemory      Size              `toml:"max_memory"`      // 0 = no limit
	RequestTimeout time.Duration     `toml:"request_timeout"` // default 60s
	QueueTimeout   time.Duration     `toml:"queue_timeout"`   // default 5s
	CGIFallback    bool              `toml:"cgi_fallback"`
	StopTimeout    time.Duration     `toml:"stop_timeout"` // default 10s
	Listen         string            `toml:"listen"`       // "" = none; a Unix address reads "unix:/absolute/path" after Load
	ListenMode     FileMode          `toml:"listen_mode"`  // default 0660
	ListenOwner    string            `toml:"listen_owner"`
	ListenGroup    string            `toml:"listen_group"`
	AllowedClients []string          `toml:"allowed_clients"` // TCP listen only; see AllowedPrefixes
	RlimitNofile   uint64            `toml:"rlimit_nofile"`   // 0 = inherit
	// RequestSlowlogTimeout: a request on a worker longer than this is
	// logged once, counted, and SlowlogCommand is run for its worker.
	// 0 = off (default).
	RequestSlowlogTimeout time.Duration `toml:"request_slowlog_timeout"`
	// SlowlogCommand is an argv whose "{pid}" is replaced by the worker's
	// pid, run once per slow request; nil = none.
	SlowlogCommand []string `toml:"slowlog_command"`
}

// Size is a byte count written with a unit: "64MiB", "512KiB", "1GB", "100"
// (see UnmarshalText). A TOML integer is a count of bytes.
type Size int64

// FileMode is a permission mode written as an octal string such as "0660".
type FileMode fs.FileMode

// LogTarget is where a log goes: "" (nowhere), "stderr" (LogStderr), or a
// file path. The file may also say true ("stderr") or false ("").
type LogTarget string

// LogStderr is the LogTarget of fcgivisor's standard error.
const LogStderr LogTarget = "stderr"
