package daemon

import (
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// otherUser is a user the test does not run as: nobody, or daemon when
// the test runs as nobody. Files the test makes are not theirs.
func otherUser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"nobody", "daemon"} {
		u, err := user.Lookup(name)
		if err == nil && u.Uid != strconv.Itoa(os.Geteuid()) && u.Uid != "0" {
			return name
		}
	}
	t.Fatal("needs a user other than the one running the test and root: nobody or daemon, which every Debian system has (base-passwd); this one has neither")
	return ""
}

// checkCase is one config and what Check says of it. In file, want and
// warn, {D} is the case's directory, {FILE} the config file, {USER}
// otherUser.
type checkCase struct {
	name       string
	privileged bool              // judge as fcgivisor running as root would
	files      map[string]uint32 // made under {D} before: a name ending in "/" is a directory; mode
	file       string            // after [server] runtime_dir = "{D}/run" and [http] listen = [], unless it has them
	getenv     map[string]string // fcgivisor's environment
	want       []string          // one per error line, in order
	notRoot    []string          // want instead, when the test does not run as root
	warn       []string          // in the log
}

var checkCases = []checkCase{
	{name: "valid", file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]`},
	{name: "valid as root", privileged: true, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
user = "{USER}"`},

	// pool.NAME.command: found as a worker start finds it, and executable
	// by the pool's user.
	{name: "missing command", file: `
[[http.route]]
pool = "php"
[pool.php]
command = ["/nonexistent-fcgivisor/php-cgi7.4"]`,
		want: []string{"{FILE}: pool.php.command: /nonexistent-fcgivisor/php-cgi7.4: no such file (install it, or fix the path)"}},
	// pool.NAME.slowlog_command: a full path or in fcgivisor's PATH,
	// executable by fcgivisor itself, which runs it.
	{name: "slowlog_command found", files: map[string]uint32{"bin/": 0o755, "bin/dump": 0o755},
		getenv: map[string]string{"PATH": "{D}/bin"}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
request_slowlog_timeout = "5s"
slowlog_command = ["dump", "{pid}"]`},
	{name: "slowlog_command not in PATH", getenv: map[string]string{"PATH": "{D}"}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
request_slowlog_timeout = "5s"
slowlog_command = ["gdb-fcgivisor-missing", "-p", "{pid}"]`,
		want: []string{`{FILE}: pool.p.slowlog_command: "gdb-fcgivisor-missing" not found in PATH "{D}" (install it, or give slowlog_command[0] as a full path)`}},
	{name: "slowlog_command missing", file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
request_slowlog_timeout = "5s"
slowlog_command = ["/nonexistent-fcgivisor/gdb"]`,
		want: []string{"{FILE}: pool.p.slowlog_command: stat /nonexistent-fcgivisor/gdb: no such file or directory (install it, or fix the path)"}},
	{name: "slowlog_command not executable", files: map[string]uint32{"dump": 0o644}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
request_slowlog_timeout = "5s"
slowlog_command = ["{D}/dump"]`,
		want: []string{"{FILE}: pool.p.slowlog_command: {D}/dump: not an executable file (install it, or fix the path)"}},
	{name: "name not in PATH", file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["php-cgi-fcgivisor-missing"]
env = { PATH = "{D}" }`,
		want: []string{`{FILE}: pool.p.command: "php-cgi-fcgivisor-missing" not found in PATH "{D}" (install it, give command[0] as a full path, or set PATH in pool.p.env)`}},
	{name: "name in env PATH", files: map[string]uint32{"bin/": 0o755, "bin/worker": 0o755}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["worker"]
env = { PATH = "/nonexistent-fcgivisor:{D}/bin" }`},
	{name: "name in inherited PATH", files: map[string]uint32{"bin/": 0o755, "bin/worker": 0o755},
		getenv: map[string]string{"PATH": "{D}/bin"}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["worker"]
inherit_env = ["PATH"]`},
	{name: "name in fcgivisor's PATH", files: map[string]uint32{"bin/": 0o755, "bin/worker": 0o755},
		getenv: map[string]string{"PATH": "{D}/bin"}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["worker"]`},
	{name: "relative to dir", files: map[string]uint32{"app/": 0o755, "app/worker": 0o755}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["./worker"]
dir = "app"`},
	{name: "relative to dir, missing", files: map[string]uint32{"app/": 0o755}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["./worker"]
dir = "app"`,
		want: []string{"{FILE}: pool.p.command: {D}/app/worker: no such file (install it, or fix the path)"}},
	{name: "command is a directory", files: map[string]uint32{"app/": 0o755}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["{D}/app"]`,
		want: []string{"{FILE}: pool.p.command: {D}/app: a directory, not a program (fix the path)"}},
	{name: "command not executable", files: map[string]uint32{"worker": 0o644}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["{D}/worker"]`,
		want: []string{"{FILE}: pool.p.command: {D}/worker: not executable (mode 0644) (chmod +x it, or fix the path)"}},
	{name: "command in a directory the user cannot search", privileged: true,
		files: map[string]uint32{"private/": 0o700, "private/worker": 0o755}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["{D}/private/worker"]
user = "{USER}"`,
		want: []string{`{FILE}: pool.p.command: {D}/private/worker: user "{USER}" cannot execute it: search {D}/private: permission denied for uid `}},
	{name: "command the user may not execute", privileged: true,
		files: map[string]uint32{"worker": 0o744}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["{D}/worker"]
user = "{USER}"`,
		want: []string{`{FILE}: pool.p.command: {D}/worker: user "{USER}" cannot execute it: open {D}/worker: permission denied for uid `}},
	{name: "unknown user: only CheckPrivileges says it", privileged: true,
		files: map[string]uint32{"private/": 0o700, "private/worker": 0o755}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["{D}/private/worker"]
user = "no-such-user-fcgivisor"`,
		want: []string{`{FILE}: pool.p.user: user "no-such-user-fcgivisor"`}},

	// pool.NAME.dir.
	{name: "dir missing", file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["./worker"]
dir = "app"`,
		want: []string{"{FILE}: pool.p.dir: {D}/app: no such directory (create it, or fix the path)"}},
	{name: "dir missing, absolute command", file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
dir = "app"`,
		want: []string{"{FILE}: pool.p.dir: {D}/app: no such directory (create it, or fix the path)"}},
	{name: "dir is a file", files: map[string]uint32{"app": 0o644}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
dir = "app"`,
		want: []string{"{FILE}: pool.p.dir: {D}/app: not a directory (fix the path)"}},
	{name: "dir the user cannot enter", privileged: true, files: map[string]uint32{"app/": 0o700}, file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
dir = "app"
user = "{USER}"`,
		want: []string{`{FILE}: pool.p.dir: {D}/app: user "{USER}" cannot enter it: search {D}/app: permission denied for uid `}},

	// http.document_root: needed by pool routes that name scripts.
	{name: "document_root missing, suffix route", file: `
[http]
listen = []
document_root = "www"
[[http.route]]
suffix = ".php"
pool = "p"
[pool.p]
command = ["/bin/true"]`,
		want: []string{"{FILE}: http.document_root: {D}/www: no such directory; http.route[0] finds its scripts there (create it, or set document_root to the directory that holds them)"}},
	{name: "document_root missing, script route", file: `
[http]
listen = []
document_root = "www"
[[http.route]]
prefix = "/go/"
pool = "p"
[[http.route]]
script = "/index.php"
pool = "p"
[pool.p]
command = ["/bin/true"]`,
		want: []string{"{FILE}: http.document_root: {D}/www: no such directory; http.route[1] finds its scripts there"}},
	{name: "document_root missing, prefix route only", file: `
[http]
listen = []
document_root = "www"
[[http.route]]
prefix = "/app/"
pool = "p"
[pool.p]
command = ["/bin/true"]`},
	{name: "document_root is a file", files: map[string]uint32{"www": 0o644}, file: `
[http]
listen = []
document_root = "www"
[[http.route]]
suffix = ".php"
index = "index.php"
pool = "p"
[pool.p]
command = ["/bin/true"]`,
		want: []string{"{FILE}: http.document_root: {D}/www: not a directory; http.route[0] finds its scripts there (make it one, or set document_root"}},

	// cgi and static route directories.
	{name: "static and cgi directories missing", file: `
[[http.route]]
prefix = "/s/"
static = "static"
[[http.route]]
prefix = "/cgi-bin/"
cgi = "cgi-bin"`,
		want: []string{
			"{FILE}: http.route[0].static: {D}/static: no such directory (create it, or fix the path)",
			"{FILE}: http.route[1].cgi: {D}/cgi-bin: no such directory (create it, or fix the path)",
		}},
	{name: "static is a file", files: map[string]uint32{"static": 0o644}, file: `
[[http.route]]
static = "static"`,
		want: []string{"{FILE}: http.route[0].static: {D}/static: not a directory (make it one, or fix the path)"}},
	{name: "static and cgi directories exist", files: map[string]uint32{"static/": 0o755, "cgi-bin/": 0o755}, file: `
[[http.route]]
prefix = "/s/"
static = "static"
[[http.route]]
prefix = "/cgi-bin/"
cgi = "cgi-bin"`},

	// server.runtime_dir: check creates nothing.
	{name: "runtime_dir to create, several levels", file: `
[server]
runtime_dir = "a/b/run"
[http]
listen = []`},
	{name: "runtime_dir is a file", files: map[string]uint32{"run": 0o644}, file: `
[server]
runtime_dir = "run"
[http]
listen = []`,
		want: []string{"{FILE}: server.runtime_dir: {D}/run: not a directory (remove it, or choose another runtime_dir)"}},
	{name: "runtime_dir below a file", files: map[string]uint32{"f": 0o644}, file: `
[server]
runtime_dir = "f/run"
[http]
listen = []`,
		want: []string{"{FILE}: server.runtime_dir: stat {D}/f/run: not a directory (a file stands where its path needs a directory: move it, or choose another runtime_dir)"}},
	{name: "runtime_dir in a directory fcgivisor may not write", files: map[string]uint32{"ro/": 0o555}, file: `
[server]
runtime_dir = "ro/run"
[http]
listen = []`,
		notRoot: []string{"{FILE}: server.runtime_dir: {D}/ro/run does not exist and fcgivisor cannot create it: write {D}/ro: permission denied (create it for fcgivisor's user, or choose another runtime_dir)"}},
	{name: "runtime_dir owned by another user", file: `
[server]
runtime_dir = "/"
[http]
listen = []`,
		notRoot: []string{"{FILE}: server.runtime_dir: / is owned by uid 0, and fcgivisor (uid "}},

	// Unreachable pools: a warning, not an error.
	{name: "unreachable pool", file: `
[[http.route]]
pool = "p"
[pool.p]
command = ["/bin/true"]
[pool.lonely]
command = ["/bin/true"]
[pool.listens]
command = ["/bin/true"]
listen = "127.0.0.1:9000"`,
		warn: []string{`pool \"lonely\" is unreachable: no route names it and it has no listen; its workers would serve nothing (add a [[http.route]] with pool = \"lonely\", or remove the pool)" key=pool.lonely`}},

	// A pool's Unix listen: its directory must exist, except runtime_dir,
	// which start creates.
	{name: "pool listen directories", files: map[string]uint32{"sockets/": 0o755}, file: `
[pool.a]
command = ["/bin/true"]
listen = "{D}/missing/a.sock"
[pool.b]
command = ["/bin/true"]
listen = "unix:{D}/sockets/b.sock"
[pool.c]
command = ["/bin/true"]
listen = "{D}/run/c.sock"`,
		want: []string{"{FILE}: pool.a.listen: stat {D}/missing: no such file or directory (create the directory, or put the socket in runtime_dir {D}/run)"}},

	// http.access_log: a file's directory must exist, and the path must
	// not be a directory; the file itself is created at start.
	{name: "access_log new file", files: map[string]uint32{"log/": 0o755}, file: `
[http]
listen = []
access_log = "log/access.log"`},
	{name: "access_log stderr", file: `
[http]
listen = []
access_log = "stderr"`},
	{name: "access_log missing directory", file: `
[http]
listen = []
access_log = "{D}/nolog/access.log"`,
		want: []string{"{FILE}: http.access_log: stat {D}/nolog: no such file or directory (create the directory)"}},
	{name: "access_log a directory", files: map[string]uint32{"log/": 0o755}, file: `
[http]
listen = []
access_log = "log"`,
		want: []string{"{FILE}: http.access_log: {D}/log is a directory (give a file path in it)"}},

	// Every error at once, in one message.
	{name: "every error", files: map[string]uint32{"run": 0o644}, file: `
[server]
runtime_dir = "run"
[http]
listen = []
[[http.route]]
static = "static"
[[http.route]]
pool = "a"
[[http.route]]
pool = "b"
[pool.a]
command = ["/nonexistent-fcgivisor/a"]
[pool.b]
command = ["/nonexistent-fcgivisor/b"]`,
		want: []string{
			"{FILE}: pool.a.command: /nonexistent-fcgivisor/a: no such file",
			"{FILE}: pool.b.command: /nonexistent-fcgivisor/b: no such file",
			"{FILE}: http.route[0].static: {D}/static: no such directory",
			"{FILE}: server.runtime_dir: {D}/run: not a directory",
		}},
}

// TestCheck runs Check on each case as fcgivisor running as root would
// judge it (privileged; nothing needs root for that) or as this user.
func TestCheck(t *testing.T) {
	for _, tc := range checkCases {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			// t.TempDir's parent is 0700: let the other user reach d.
			if err := os.Chmod(filepath.Dir(d), 0o755); err != nil {
				t.Fatal(err)
			}
			other := "nobody"
			if tc.privileged {
				other = otherUser(t)
			}
			path := filepath.Join(d, "fcgivisor.toml")
			r := strings.NewReplacer("{D}", d, "{FILE}", path, "{USER}", other)
			makeFiles(t, d, tc.files)
			text := r.Replace(tc.file)
			if !strings.Contains(text, "[http]") {
				text = "[http]\nlisten = []\n" + text
			}
			if !strings.Contains(text, "[server]") {
				text = "[server]\nruntime_dir = \"run\"\n" + text
			}
			cfg, err := conf.Parse(path, []byte(text))
			if err != nil {
				t.Fatalf("conf: %v", err)
			}
			env := make(map[string]string)
			for k, v := range tc.getenv {
				env[k] = r.Replace(v)
			}
			getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
			log := &testlog.Buffer{}
			err = Check(cfg, tc.privileged, getenv, slog.New(slog.NewTextHandler(log, nil)))

			want := tc.want
			if tc.notRoot != nil && os.Geteuid() != 0 {
				want = tc.notRoot
			}
			var lines []string
			if err != nil {
				lines = strings.Split(err.Error(), "\n")
			}
			if len(lines) != len(want) {
				t.Errorf("%d errors, want %d:\n%v", len(lines), len(want), err)
			}
			for i, w := range want {
				if w = r.Replace(w); i >= len(lines) || !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d: want one starting %q", i, w)
				}
			}
			logged := nonEmpty(strings.Split(log.String(), "\n"))
			if len(logged) != len(tc.warn) {
				t.Errorf("%d warnings, want %d:\n%s", len(logged), len(tc.warn), log)
			}
			for _, w := range tc.warn {
				if !strings.Contains(log.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			if _, err := os.Stat(filepath.Join(d, "run")); tc.files["run"] == 0 && err == nil {
				t.Error("Check created runtime_dir")
			}
			if _, err := os.Stat(filepath.Join(d, "a")); err == nil {
				t.Error("Check created the directories above runtime_dir")
			}
		})
	}
}

// makeFiles makes files (name → mode; a name ending in "/" is a
// directory) under d, parents first. A directory has its mode before its
// entries are made: cases give entries only to directories their owner
// may write.
func makeFiles(t *testing.T, d string, files map[string]uint32) {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := filepath.Join(d, name)
		mode := os.FileMode(files[name])
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600)
		}
		if err == nil {
			err = os.Chmod(p, mode) // past the umask
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func nonEmpty(lines []string) []string {
	return slices.DeleteFunc(lines, func(l string) bool { return l == "" })
}
