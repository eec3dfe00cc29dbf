// This file implements what happens after decoding: defaults for absent keys,
// resolution of relative paths, and the checks that span several keys.

package conf

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults for keys absent from the file, as docs/configuration.md lists
// them; admin.listen defaults to "unix:" + runtime_dir + "/admin.sock".
const (
	defaultRuntimeDir        = "/run/fcgivisor"
	defaultShutdownTimeout   = 30 * time.Second
	defaultLogLevel          = "info"
	defaultLogFormat         = "text"
	defaultHTTPListen        = "127.0.0.1:8080"
	defaultDocumentRoot      = "/srv/www"
	defaultReadHeaderTimeout = 10 * time.Second
	defaultHTTPIdleTimeout   = 60 * time.Second
	defaultSendTimeout       = 60 * time.Second
	defaultMaxHeaderBytes    = 65536
	defaultMaxBodyBytes      = Size(64 << 20)
	defaultAccessLogFormat   = "combined"
	defaultRoutePrefix       = "/"
	defaultCGITimeout        = 60 * time.Second
	defaultCGIMaxConcurrent  = 32
	defaultScaling           = Static
	defaultWorkers           = 1
	defaultMaxWorkers        = 16 // dynamic and ondemand; static: workers
	defaultMinIdle           = 1
	defaultMaxIdle           = 3
	defaultPoolIdleTimeout   = 10 * time.Second
	defaultConcurrency       = 1
	defaultRequestTimeout    = 60 * time.Second
	defaultQueueTimeout      = 5 * time.Second
	defaultStopTimeout       = 10 * time.Second
	defaultListenMode        = FileMode(0o660)
)

// maxUnixDir is the longest directory a Unix listen address may be in:
// socket.Listen binds in a temporary directory there first, whose path
// (dir + "/.fv" + up to 10 digits + "/s") must fit in maxUnixPath. It is
// socket.MaxDirLen (conf does not import socket; a test compares them).
const maxUnixDir = maxUnixPath - len("/.fv0123456789/s")

// workerSocketSuffix is the longest tail the supervisor appends to
// runtime_dir + "/w/" + pool name for a worker socket: "-" + up to 10
// digits + ".sock".
const workerSocketSuffix = len("-0123456789.sock")

// setDefault stores v in *p unless key was in the file.
func setDefault[T any](d *decoder, key string, p *T, v T) {
	if !d.isSet(key) {
		*p = v
	}
}

// finish applies defaults, resolves relative paths against base and checks
// everything decoding could not.
func (d *decoder) finish(c *Config, base string) {
	s, h := &c.Server, &c.HTTP

	setDefault(d, "server.runtime_dir", &s.RuntimeDir, defaultRuntimeDir)
	setDefault(d, "server.shutdown_timeout", &s.ShutdownTimeout, defaultShutdownTimeout)
	setDefault(d, "server.log_level", &s.LogLevel, defaultLogLevel)
	setDefault(d, "server.log_format", &s.LogFormat, defaultLogFormat)
	s.RuntimeDir = resolve(base, s.RuntimeDir)
	s.PIDFile = resolve(base, s.PIDFile)
	s.LogFile = resolve(base, s.LogFile)
	setDefault(d, "admin.listen", &c.Admin.Listen, "unix:"+filepath.Join(s.RuntimeDir, "admin.sock"))

	setDefault(d, "http.listen", &h.Listen, []string{defaultHTTPListen})
	setDefault(d, "http.listen_mode", &h.ListenMode, defaultListenMode)
	setDefault(d, "http.document_root", &h.DocumentRoot, defaultDocumentRoot)
	setDefault(d, "http.read_header_timeout", &h.ReadHeaderTimeout, defaultReadHeaderTimeout)
	setDefault(d, "http.idle_timeout", &h.IdleTimeout, defaultHTTPIdleTimeout)
	setDefault(d, "http.send_timeout", &h.SendTimeout, defaultSendTimeout)
	setDefault(d, "http.max_header_bytes", &h.MaxHeaderBytes, defaultMaxHeaderBytes)
	setDefault(d, "http.max_body_bytes", &h.MaxBodyBytes, defaultMaxBodyBytes)
	setDefault(d, "http.request_buffering", &h.RequestBuffering, true)
	setDefault(d, "http.access_log_format", &h.AccessLogFormat, defaultAccessLogFormat)
	h.DocumentRoot = resolve(base, h.DocumentRoot)

	d.server(s)
	listens := d.httpSection(h, base)
	listens = append(listens, d.adminListen(c, base)...)
	listens = append(listens, d.statusSection(&c.Status, base)...)

	for i, r := range h.Routes {
		if r == nil { // cannot happen: the decoder allocates every element
			continue
		}
		d.route(keyElem("http.route", i), r, c, base)
	}
	for _, p := range c.Pools() {
		if l, ok := d.pool(keyChild("pool", p.Name), p, s, base); ok {
			listens = append(listens, l)
		}
	}
	d.listens(listens)
}

// resolve makes path absolute against base and cleans it; "" stays "".
func resolve(base, path string) string {
	if path == "" {
		return ""
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	return filepath.Clean(path)
}

// resolveAddr rewrites a Unix socket address as "unix:" + an absolute path;
// TCP addresses and addresses that do not parse are returned unchanged.
func resolveAddr(base, addr string) string {
	network, path, err := ParseAddr(addr)
	if err != nil || network != "unix" {
		return addr
	}
	return "unix:" + resolve(base, path)
}

type listen struct{ key, addr string }

// checkAddr reports an address that does not parse (the resolved path may
// be too long even when the written one is not), or a Unix socket whose
// directory is too long for the temporary name it is bound under.
func (d *decoder) checkAddr(key, addr string) bool {
	network, path, err := ParseAddr(addr)
	if err != nil {
		d.errorf(key, "%v", err)
		return false
	}
	if n := len(filepath.Dir(path)); network == "unix" && n > maxUnixDir {
		d.errorf(key, "invalid address %q: the socket's directory is %d bytes long, over the %d-byte limit (fcgivisor binds the socket in a temporary directory there first)",
			addr, n, maxUnixDir)
		return false
	}
	return true
}

// adminListen resolves admin.listen and checks it: a Unix socket, or TCP
// on a loopback IP. It returns the address when it is valid.
func (d *decoder) adminListen(c *Config, base string) []listen {
	c.Admin.Listen = resolveAddr(base, c.Admin.Listen)
	if !d.isSet("admin.listen") {
		// The default follows runtime_dir: name the key to change.
		_, path, err := ParseAddr(c.Admin.Listen)
		if err != nil || len(path) > maxUnixPath || len(filepath.Dir(path)) > maxUnixDir {
			d.errorf("server.runtime_dir", "the default admin socket %s is too long for a Unix socket (over %d bytes, or in a directory over %d): shorten runtime_dir or set admin.listen",
				strings.TrimPrefix(c.Admin.Listen, "unix:"), maxUnixPath, maxUnixDir)
			return nil
		}
		return []listen{{"admin.listen", c.Admin.Listen}}
	}
	if !d.checkAddr("admin.listen", c.Admin.Listen) || !d.adminLoopback(c.Admin.Listen) {
		return nil
	}
	return []listen{{"admin.listen", c.Admin.Listen}}
}

// adminLoopback refuses a TCP admin.listen that other hosts could reach:
// the admin endpoint has no authentication and serves /reload and /stop
// (issue 10). Only an IP literal can be judged; a host name may resolve to
// anything, now or later.
func (d *decoder) adminLoopback(addr string) bool {
	network, address, _ := ParseAddr(addr)
	if network != "tcp" {
		return true
	}
	host, port, _ := net.SplitHostPort(address)
	ip, err := netip.ParseAddr(host)
	if err == nil && ip.IsLoopback() {
		return true
	}
	why := fmt.Sprintf("%s is not a loopback address", host)
	switch {
	case host == "":
		why = "an empty host means every address of the machine"
	case err != nil:
		why = fmt.Sprintf("%q is a host name, which may resolve to any address", host)
	}
	d.errorf("admin.listen", "%q: %s, and whoever reaches admin.listen can stop and reload fcgivisor: use a Unix socket (the default) or a loopback IP (\"127.0.0.1:%s\" or \"[::1]:%s\"); to let Prometheus scrape /metrics from other hosts, set [status] listen = %q instead (read-only)",
		addr, why, port, port, addr)
	return false
}

// statusSection resolves and checks [status]. It returns the listen
// address when it is valid.
func (d *decoder) statusSection(st *Status, base string) []listen {
	setDefault(d, "status.listen_mode", &st.ListenMode, defaultListenMode)
	if st.Listen == "" {
		d.unixOnly("status", false, "status.listen is not set")
		return nil
	}
	st.Listen = resolveAddr(base, st.Listen)
	if !d.checkAddr("status.listen", st.Listen) {
		return nil
	}
	network, _, _ := ParseAddr(st.Listen)
	d.unixOnly("status", network == "unix", fmt.Sprintf("status.listen %q is a TCP address", st.Listen))
	return []listen{{"status.listen", st.Listen}}
}

// unixOnly refuses listen_mode, listen_owner and listen_group in table
// when the table has no Unix socket they could apply to (why says so):
// a reader would believe they guard something.
func (d *decoder) unixOnly(table string, unix bool, why string) {
	if unix {
		return
	}
	for _, k := range []string{"listen_mode", "listen_owner", "listen_group"} {
		if key := table + "." + k; d.isSet(key) {
			d.errorf(key, "only applies to Unix socket addresses (unix:/path), and %s", why)
		}
	}
}

// listens reports addresses that parse but are used twice.
func (d *decoder) listens(ls []listen) {
	seen := map[string]string{} // sameAddrKey -> first key
	for _, l := range ls {
		network, address, err := ParseAddr(l.addr)
		if err != nil {
			continue // reported where it was found
		}
		k, ok := sameAddrKey(network, address)
		if !ok {
			continue
		}
		if first, dup := seen[k]; dup {
			d.errorf(l.key, "%q is already used by %s; every listen address must be distinct", l.addr, first)
			continue
		}
		seen[k] = l.key
	}
}

func (d *decoder) notNegative(key string, v time.Duration) {
	if v < 0 {
		d.errorf(key, "must not be negative, got %v", v)
	}
}

func (d *decoder) notNegativeInt(key string, v int) bool {
	if v < 0 {
		d.errorf(key, "must not be negative, got %d", v)
		return false
	}
	return true
}

func (d *decoder) oneOf(key, what, v string, allowed ...string) bool {
	if !slices.Contains(allowed, v) {
		d.errorf(key, "%q is not a %s (%s)", v, what, strings.Join(allowed, ", "))
		return false
	}
	return true
}

func (d *decoder) server(s *Server) {
	if s.RuntimeDir == "" {
		d.errorf("server.runtime_dir", "must not be empty (default %q)", defaultRuntimeDir)
	}
	d.notNegative("server.shutdown_timeout", s.ShutdownTimeout)
	d.notNegativeInt("server.max_procs", s.MaxProcs)
	d.oneOf("server.log_level", "log level", s.LogLevel, "debug", "info", "warn", "error")
	d.oneOf("server.log_format", "log format", s.LogFormat, "text", "json")
}

func (d *decoder) httpSection(h *HTTP, base string) []listen {
	var out []listen
	unix := false
	for i := range h.Listen {
		key := keyElem("http.listen", i)
		h.Listen[i] = resolveAddr(base, h.Listen[i])
		if d.checkAddr(key, h.Listen[i]) {
			out = append(out, listen{key, h.Listen[i]})
		}
		network, _, _ := ParseAddr(h.Listen[i])
		unix = unix || network == "unix"
	}
	d.unixOnly("http", unix, "http.listen has none")
	d.notNegative("http.read_header_timeout", h.ReadHeaderTimeout)
	d.notNegative("http.idle_timeout", h.IdleTimeout)
	d.notNegative("http.send_timeout", h.SendTimeout)
	d.notNegativeInt("http.max_header_bytes", h.MaxHeaderBytes)
	d.notNegativeInt("http.max_connections", h.MaxConnections)
	d.accessLog(h, base)
	return out
}

// accessLog resolves and checks http.access_log and its format. "stdout"
// and "-" are refused rather than taken for file names in the config's
// directory: whoever wrote them meant a stream.
func (d *decoder) accessLog(h *HTTP, base string) {
	d.oneOf("http.access_log_format", "known format", h.AccessLogFormat, "combined", "json")
	switch t := h.AccessLog; {
	case t == "" || t == LogStderr:
	case t == "stdout" || t == "-":
		d.errorf("http.access_log", `%q is not a target ("stderr", a file path, or "" for none; a file of that name: "./%s")`, string(t), string(t))
	case strings.IndexByte(string(t), 0) >= 0:
		d.errorf("http.access_log", "the path contains a NUL byte")
	case strings.HasSuffix(string(t), "/"):
		d.errorf("http.access_log", "%q names a directory: give a file path (e.g. \"/var/log/fcgivisor/access.log\")", string(t))
	default:
		h.AccessLog = LogTarget(resolve(base, string(t)))
	}
}

func (d *decoder) route(key string, r *Route, c *Config, base string) {
	setDefault(d, key+".prefix", &r.Prefix, defaultRoutePrefix)
	if !strings.HasPrefix(r.Prefix, "/") {
		d.errorf(key+".prefix", "%q must start with \"/\"", r.Prefix)
	}
	if r.Script != "" && !strings.HasPrefix(r.Script, "/") {
		d.errorf(key+".script", "%q must start with \"/\" (a path under document_root, e.g. \"/index.php\")", r.Script)
	}
	kind := d.routeTarget(key, r, c)
	r.CGI = resolve(base, r.CGI)
	r.Static = resolve(base, r.Static)
	if kind == "" {
		return // no target or several: reported
	}
	d.routeKeys(key, kind)
	switch kind {
	case "static":
		for i, p := range r.Deny {
			if msg := denyProblem(p); msg != "" {
				d.errorf(keyElem(key+".deny", i), "%q %s", p, msg)
			}
		}
	case "pool":
		d.env(key+".env", r.Env)
	case "status":
		switch r.Status {
		case 403, 404, 410, 451:
			// Refusals that need no other header (405 would need Allow,
			// 401 WWW-Authenticate).
		default:
			d.errorf(key+".status", "%d is not a status a status route answers (403, 404, 410, 451)", r.Status)
		}
	case "cgi":
		setDefault(d, key+".timeout", &r.Timeout, defaultCGITimeout)
		setDefault(d, key+".max_concurrent", &r.MaxConcurrent, defaultCGIMaxConcurrent)
		d.notNegative(key+".timeout", r.Timeout)
		if r.MaxConcurrent < 1 {
			d.errorf(key+".max_concurrent", "must be at least 1, got %d", r.MaxConcurrent)
		}
		d.env(key+".env", r.Env)
	}
}

// routeTarget checks that r has exactly one target and that a pool it
// names exists. It returns the route's kind ("pool", "cgi", "static" or
// "status"), or "" when it has no target or several.
func (d *decoder) routeTarget(key string, r *Route, c *Config) string {
	// A target whose value did not decode is reported already; it still
	// counts, so that the route is not also said to have none.
	failed := func(k string) bool { return d.failed[key+"."+k] }
	var targets []string
	for _, t := range []struct {
		name string
		set  bool
	}{
		{"pool", r.Pool != "" || failed("pool")}, {"cgi", r.CGI != "" || failed("cgi")},
		{"static", r.Static != "" || failed("static")}, {"status", d.isSet(key+".status") || failed("status")},
	} {
		if t.set {
			targets = append(targets, t.name)
		}
	}
	switch len(targets) {
	case 0:
		d.errorf(key, "no target: set exactly one of pool, cgi, static or status")
		return ""
	case 1:
	default:
		d.errorf(key, "%s are all set: set exactly one of pool, cgi, static or status", strings.Join(targets, " and "))
		return ""
	}
	if r.Pool != "" {
		if _, ok := c.Pool[r.Pool]; !ok {
			if len(c.Pool) == 0 {
				d.errorf(key+".pool", "no pool %q (there are no [pool.NAME] tables)", r.Pool)
			} else {
				names := make([]string, 0, len(c.Pool))
				for _, p := range c.Pools() {
					names = append(names, p.Name)
				}
				d.errorf(key+".pool", "no pool %q (pools: %s)", r.Pool, strings.Join(names, ", "))
			}
		}
		d.poolRoute(key, r)
	}
	return targets[0]
}

// routeKeys refuses the keys that mean nothing for a route of kind: they
// would let a reader believe they apply (a cgi route runs the script the
// path names, a static route serves the file it names, a status route
// answers its status and nothing else).
func (d *decoder) routeKeys(key, kind string) {
	for _, k := range []struct {
		name  string
		kinds []string
	}{
		{"index", []string{"pool", "static"}},
		{"script", []string{"pool"}},
		{"deny", []string{"static"}},
		{"user", []string{"cgi", "static"}},
		{"timeout", []string{"cgi"}},
		{"max_concurrent", []string{"cgi"}},
		{"group", []string{"cgi"}},
		{"env", []string{"pool", "cgi"}},
	} {
		if d.isSet(key+"."+k.name) && !slices.Contains(k.kinds, kind) {
			d.errorf(key+"."+k.name, "does not apply to %s routes (it only applies to %s routes)", kind, strings.Join(k.kinds, " and "))
		}
	}
}

// denyProblem says what is wrong with a static route's deny pattern, or
// "". A pattern is a name pattern without "/", matched against every
// segment of a path, or starts with "/" and is matched against a path's
// leading segments under the static directory; one trailing "/" changes
// nothing. Each segment is a path.Match pattern (front/static.go matches
// them).
func denyProblem(p string) string {
	body := strings.TrimSuffix(p, "/")
	anchored := strings.HasPrefix(body, "/")
	body = strings.TrimPrefix(body, "/")
	switch {
	case strings.IndexByte(p, 0) >= 0:
		return "contains a NUL byte"
	case body == "":
		return `matches nothing: write a directory from the static directory ("/data/") or a name pattern ("*.ini")`
	case !anchored && strings.Contains(body, "/"):
		return fmt.Sprintf(`has a "/" inside but does not start with "/": write "/%s" (from the static directory) or a name without "/" (at any depth)`, body)
	}
	for seg := range strings.SplitSeq(body, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return `has an empty, "." or ".." segment`
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Sprintf("is not a valid pattern (%v; see Go's path.Match)", err)
		}
	}
	return ""
}

// poolRoute checks how a pool route names its script. With script, every
// request runs that script, so suffix and index would be ignored. index
// names the script for a path ending in "/", which is looked up like any
// other only with suffix: without it SCRIPT_NAME is the prefix and index
// would only lengthen PATH_INFO. suffix ends a path segment, so it holds
// no "/".
func (d *decoder) poolRoute(key string, r *Route) {
	if r.Script != "" {
		for _, k := range []string{"suffix", "index"} {
			if d.isSet(key + "." + k) {
				d.errorf(key+"."+k, "does not apply with script (every request runs the script)")
			}
		}
		return
	}
	if r.Index != "" && r.Suffix == "" {
		d.errorf(key+".index", "needs suffix on a pool route (e.g. suffix = \".php\" with index = \"index.php\")")
	}
	if strings.Contains(r.Suffix, "/") {
		d.errorf(key+".suffix", "%q must not contain \"/\" (it ends a path segment, e.g. \".php\")", r.Suffix)
	}
}

// env checks an environment table: names non-empty, without '=' or NUL;
// values without NUL.
func (d *decoder) env(key string, env map[string]string) {
	for _, name := range sortedKeys(env) {
		switch {
		case name == "":
			d.errorf(keyChild(key, name), "empty variable name")
		case strings.ContainsAny(name, "=\x00"):
			d.errorf(keyChild(key, name), "variable name must not contain '=' or a NUL byte")
		case strings.IndexByte(env[name], 0) >= 0:
			d.errorf(keyChild(key, name), "value contains a NUL byte")
		}
	}
}

// validPoolName reports whether name is [A-Za-z0-9_-]+: pool names become
// parts of socket file names.
func validPoolName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		if !isBare(name[i]) {
			return false
		}
	}
	return true
}

// pool applies defaults to p and checks it. It returns p's public listen
// address when it has a valid one.
func (d *decoder) pool(key string, p *Pool, s *Server, base string) (listen, bool) {
	k := func(name string) string { return key + "." + name }
	d.poolName(key, p, s)
	maxSet := d.poolDefaults(k, p, base)
	d.poolCommand(k, p)
	d.poolLimits(k, p, maxSet)
	d.poolSlowlog(k, p)
	return d.poolListen(k, p, base)
}

// poolName checks that p's name can be part of its worker sockets' paths.
func (d *decoder) poolName(key string, p *Pool, s *Server) {
	if !validPoolName(p.Name) {
		d.errorf(key, "pool name %q may only use letters, digits, '_' and '-' (it is part of file names)", p.Name)
	} else if n := len(s.RuntimeDir) + len("/w/") + len(p.Name) + workerSocketSuffix; s.RuntimeDir != "" && n > maxUnixPath {
		d.errorf(key, "worker sockets %s/w/%s-NNNNNNNNNN.sock can be %d bytes long, over the %d-byte limit of Unix sockets: shorten server.runtime_dir or the pool name",
			s.RuntimeDir, p.Name, n, maxUnixPath)
	}
}

// poolDefaults sets the defaults of the keys p's table leaves out and
// resolves its dir. It reports whether max_workers was in the file.
func (d *decoder) poolDefaults(k func(string) string, p *Pool, base string) (maxSet bool) {
	setDefault(d, k("scaling"), &p.Scaling, defaultScaling)
	setDefault(d, k("workers"), &p.Workers, defaultWorkers)
	maxSet = d.isSet(k("max_workers"))
	if !maxSet {
		if p.Scaling == Static {
			p.MaxWorkers = p.Workers
		} else {
			p.MaxWorkers = defaultMaxWorkers
		}
	}
	setDefault(d, k("min_idle"), &p.MinIdle, defaultMinIdle)
	setDefault(d, k("max_idle"), &p.MaxIdle, defaultMaxIdle)
	setDefault(d, k("idle_timeout"), &p.IdleTimeout, defaultPoolIdleTimeout)
	setDefault(d, k("concurrency"), &p.Concurrency, defaultConcurrency)
	setDefault(d, k("request_timeout"), &p.RequestTimeout, defaultRequestTimeout)
	setDefault(d, k("queue_timeout"), &p.QueueTimeout, defaultQueueTimeout)
	setDefault(d, k("stop_timeout"), &p.StopTimeout, defaultStopTimeout)
	setDefault(d, k("listen_mode"), &p.ListenMode, defaultListenMode)
	p.Dir = resolve(base, p.Dir)
	return maxSet
}

// poolCommand checks the worker's argv and environment.
func (d *decoder) poolCommand(k func(string) string, p *Pool) {
	switch {
	case len(p.Command) == 0:
		d.errorf(k("command"), `missing or empty: give the worker's argv, e.g. command = ["/usr/bin/php-cgi"]`)
	case p.Command[0] == "":
		d.errorf(keyElem(k("command"), 0), "empty program name")
	}
	for i, arg := range p.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			d.errorf(keyElem(k("command"), i), "contains a NUL byte")
		}
	}
	d.env(k("env"), p.Env)
	for i, name := range p.InheritEnv {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			d.errorf(keyElem(k("inherit_env"), i), "%q is not a variable name (non-empty, without '=' or NUL)", name)
		}
	}
}

// poolSlowlog checks the slow-request log: slowlog_command is an argv
// (its "{pid}" is the worker's pid) run only when request_slowlog_timeout
// is set, so a command without the timeout is a mistake worth an error.
// Whether command[0] exists is for daemon.Check, as for command.
func (d *decoder) poolSlowlog(k func(string) string, p *Pool) {
	d.notNegative(k("request_slowlog_timeout"), p.RequestSlowlogTimeout)
	if !d.isSet(k("slowlog_command")) {
		return
	}
	switch {
	case len(p.SlowlogCommand) == 0:
		d.errorf(k("slowlog_command"), `empty: give an argv, e.g. ["gdb", "-p", "{pid}", "-batch", "-ex", "bt"], or leave the key out`)
	case p.SlowlogCommand[0] == "":
		d.errorf(keyElem(k("slowlog_command"), 0), "empty program name")
	case strings.Contains(p.SlowlogCommand[0], "/") && !filepath.IsAbs(p.SlowlogCommand[0]):
		d.errorf(keyElem(k("slowlog_command"), 0), "%q: give a full path, or a bare name looked up in fcgivisor's PATH", p.SlowlogCommand[0])
	case p.RequestSlowlogTimeout == 0:
		d.errorf(k("slowlog_command"), `runs only for slow requests: set request_slowlog_timeout (e.g. "5s") too`)
	}
	for i, arg := range p.SlowlogCommand {
		if strings.IndexByte(arg, 0) >= 0 {
			d.errorf(keyElem(k("slowlog_command"), i), "contains a NUL byte")
		}
	}
}

// poolLimits checks scaling, recycling and timeouts, and sets ondemand's
// floor.
func (d *decoder) poolLimits(k func(string) string, p *Pool, maxSet bool) {
	d.countChecks(k, p, maxSet)
	minIdleOK := d.notNegativeInt(k("min_idle"), p.MinIdle)
	maxIdleOK := d.notNegativeInt(k("max_idle"), p.MaxIdle)
	if minIdleOK && maxIdleOK && p.MinIdle > p.MaxIdle {
		d.errorf(k("min_idle"), "%d is more than max_idle %d", p.MinIdle, p.MaxIdle)
	}
	if p.Concurrency < 1 {
		d.errorf(k("concurrency"), "must be at least 1, got %d", p.Concurrency)
	}
	d.notNegativeInt(k("max_requests"), p.MaxRequests)
	for _, t := range []struct {
		name string
		v    time.Duration
	}{
		{"idle_timeout", p.IdleTimeout}, {"max_lifetime", p.MaxLifetime}, {"request_timeout", p.RequestTimeout},
		{"queue_timeout", p.QueueTimeout}, {"stop_timeout", p.StopTimeout},
	} {
		d.notNegative(k(t.name), t.v)
	}
	if p.Scaling == OnDemand {
		p.MinWorkers = 0 // the floor of ondemand, whatever was written
	}
}

// poolListen resolves and checks p's public socket and allowed_clients. It
// returns the listen address when it has a valid one.
func (d *decoder) poolListen(k func(string) string, p *Pool, base string) (listen, bool) {
	var out listen
	ok := false
	if p.Listen != "" {
		p.Listen = resolveAddr(base, p.Listen)
		if d.checkAddr(k("listen"), p.Listen) {
			out, ok = listen{k("listen"), p.Listen}, true
		}
	}
	network, _, _ := ParseAddr(p.Listen)
	if len(p.AllowedClients) > 0 && network != "tcp" {
		d.errorf(k("allowed_clients"), "only applies to a TCP listen address (a Unix socket is guarded by listen_mode, listen_owner and listen_group)")
	}
	for i, c := range p.AllowedClients {
		if _, err := parseClient(c); err != nil {
			d.errorf(keyElem(k("allowed_clients"), i), "%v", err)
		}
	}
	return out, ok
}

// countChecks checks the worker counts of p against each other.
func (d *decoder) countChecks(k func(string) string, p *Pool, maxSet bool) {
	if !d.oneOf(k("scaling"), "scaling mode", string(p.Scaling), string(Static), string(Dynamic), string(OnDemand)) {
		return
	}
	maxNote := ""
	switch {
	case maxSet:
	case p.Scaling == Static:
		maxNote = " (for static scaling max_workers defaults to workers)"
	default:
		maxNote = " (the default for " + string(p.Scaling) + " scaling)"
	}
	if p.Scaling == Static {
		if p.Workers < 1 {
			d.errorf(k("workers"), "must be at least 1 for static scaling, got %d", p.Workers)
		}
	} else {
		d.notNegativeInt(k("workers"), p.Workers)
	}
	minOK := d.notNegativeInt(k("min_workers"), p.MinWorkers)
	maxOK := true
	if p.MaxWorkers < 1 && (maxSet || p.Scaling != Static) {
		d.errorf(k("max_workers"), "must be at least 1, got %d", p.MaxWorkers)
		maxOK = false
	}
	if maxOK && minOK && p.MinWorkers > p.MaxWorkers {
		d.errorf(k("min_workers"), "%d is more than max_workers %d%s", p.MinWorkers, p.MaxWorkers, maxNote)
	}
	if maxOK && p.Workers > p.MaxWorkers {
		d.errorf(k("workers"), "%d is more than max_workers %d%s", p.Workers, p.MaxWorkers, maxNote)
	}
	if p.Scaling == Dynamic && minOK && p.Workers >= 0 && p.Workers < p.MinWorkers && p.MinWorkers <= p.MaxWorkers {
		d.errorf(k("workers"), "%d is less than min_workers %d (dynamic scaling starts between min_workers and max_workers)", p.Workers, p.MinWorkers)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
