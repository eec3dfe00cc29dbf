package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/socket"
)

// diffConfig reports the first differences between two configs field by
// field, so a failure names the field instead of dumping both structs.
func diffConfig(t *testing.T, got, want *Config) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	check := func(name string, g, w any) {
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got  %+v\n want %+v", name, g, w)
		}
	}
	check("File", got.File, want.File)
	check("Server", got.Server, want.Server)
	check("Admin", got.Admin, want.Admin)
	check("Status", got.Status, want.Status)
	gh, wh := got.HTTP, want.HTTP
	gh.Routes, wh.Routes = nil, nil
	check("HTTP", gh, wh)
	check("len(Routes)", len(got.HTTP.Routes), len(want.HTTP.Routes))
	for i := range min(len(got.HTTP.Routes), len(want.HTTP.Routes)) {
		check(fmt.Sprintf("Routes[%d]", i), *got.HTTP.Routes[i], *want.HTTP.Routes[i])
	}
	check("pool names", sortedKeys(got.Pool), sortedKeys(want.Pool))
	for name, w := range want.Pool {
		if g, ok := got.Pool[name]; ok {
			check("Pool["+name+"]", *g, *w)
		}
	}
}

func TestFullConfig(t *testing.T) {
	got, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File: "testdata/full.toml",
		Server: Server{
			RuntimeDir:      "/run/fv",
			PIDFile:         "/run/fv.pid",
			ShutdownTimeout: 45 * time.Second,
			LogLevel:        "debug",
			LogFormat:       "json",
			LogFile:         "/var/log/fcgivisor.log",
			MaxProcs:        3,
		},
		Admin:  Admin{Listen: "127.0.0.1:9180"},
		Status: Status{Listen: "unix:/run/fv/status.sock", ListenMode: 0o640, ListenOwner: "nobody", ListenGroup: "prometheus"},
		HTTP: HTTP{
			Listen:            []string{"127.0.0.1:8081", "unix:/run/fv/http.sock"},
			ListenMode:        0o666,
			ListenOwner:       "www-data",
			ListenGroup:       "nginx",
			DocumentRoot:      "/srv/app",
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
			SendTimeout:       20 * time.Second,
			MaxHeaderBytes:    32768,
			MaxConnections:    512,
			MaxBodyBytes:      8 << 20,
			AccessLog:         "/var/log/fcgivisor/access.log",
			AccessLogFormat:   "json",
			Routes: []*Route{
				{Prefix: "/app/", Suffix: ".php", Index: "index.php", Pool: "php"},
				{Prefix: "/cgi-bin/", CGI: "/usr/lib/cgi-bin", Timeout: 20 * time.Second, MaxConcurrent: 4, User: "nobody", Group: "nogroup",
					Env: map[string]string{"PERL5LIB": "/usr/lib/cgi-bin/lib"}},
				{Prefix: "/data/", Status: 404},
				{Prefix: "/", Static: "/srv/app/public", Deny: []string{"/conf/", "*.ini"}, User: "www-data"},
				{Prefix: "/api/", Script: "/api.php", Pool: "php", Env: map[string]string{"APP_CONFIG": "/etc/app/api.ini"}},
			},
		},
		Pool: map[string]*Pool{
			"php": {
				Name:           "php",
				Command:        []string{"/usr/bin/php-cgi", "-c", "/etc/php.ini"},
				Dir:            "/srv/app",
				Env:            map[string]string{"APP_ENV": "prod", "X.Y": "z"},
				InheritEnv:     []string{"PATH", "TZ"},
				User:           "www-data",
				Group:          "www-data",
				Scaling:        Dynamic,
				Workers:        4,
				MinWorkers:     2,
				MaxWorkers:     12,
				MinIdle:        2,
				MaxIdle:        5,
				IdleTimeout:    30 * time.Second,
				Concurrency:    2,
				MaxRequests:    500,
				MaxLifetime:    time.Hour,
				MaxMemory:      256 << 20,
				RequestTimeout: 90 * time.Second,
				QueueTimeout:   3 * time.Second,
				CGIFallback:    true,
				StopTimeout:    15 * time.Second,
				Listen:         "unix:/run/php.sock",
				ListenMode:     0o600,
				ListenOwner:    "www-data",
				ListenGroup:    "nginx",
				AllowedClients: []string{},
				RlimitNofile:   4096,

				RequestSlowlogTimeout: 5 * time.Second,
				SlowlogCommand:        []string{"/usr/bin/gdb", "-p", "{pid}", "-batch", "-ex", "bt"},
			},
			"go": {
				Name:           "go",
				Command:        []string{"./app"},
				Scaling:        Static,
				Workers:        3,
				MaxWorkers:     3,
				MinIdle:        1,
				MaxIdle:        3,
				IdleTimeout:    10 * time.Second,
				Concurrency:    1,
				RequestTimeout: 60 * time.Second,
				QueueTimeout:   5 * time.Second,
				StopTimeout:    10 * time.Second,
				Listen:         "127.0.0.1:9000",
				ListenMode:     0o660,
				AllowedClients: []string{"10.0.0.0/8", "192.168.1.7", "::1"},
			},
		},
	}
	diffConfig(t, got, want)
}

// TestFullConfigCoversSchema guards TestFullConfig: every key of the schema
// must appear in testdata/full.toml, so a field added to types.go without a
// test fails here.
func TestFullConfigCoversSchema(t *testing.T) {
	src, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range missingKeys(string(src)) {
		t.Errorf("testdata/full.toml does not set %s", k)
	}
}

// missingKeys lists the keys of the schema that src does not set: in
// [[http.route]], a key counts when one of the first five routes sets it;
// in [pool.NAME], when pool.php does.
func missingKeys(src string) []string {
	ix := indexLines(src)
	var missing []string
	var walk func(typ reflect.Type, prefixes ...string)
	walk = func(typ reflect.Type, prefixes ...string) {
		fields, names := tomlFields(typ)
		for _, name := range names {
			found := false
			for _, p := range prefixes {
				found = found || ix.explicit[p+name] != 0 || ix.implicit[p+name] != 0
			}
			if !found {
				missing = append(missing, prefixes[0]+name)
			}
			if ft := typ.Field(fields[name]).Type; ft.Kind() == reflect.Struct {
				walk(ft, prefixes[0]+name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	walk(reflect.TypeFor[Route](), "http.route[0].", "http.route[1].", "http.route[2].", "http.route[3].", "http.route[4].")
	walk(reflect.TypeFor[Pool](), "pool.php.")
	return missing
}

func TestDefaults(t *testing.T) {
	src, err := os.ReadFile("testdata/minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("/etc/fcgivisor/fcgivisor.toml", src)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File: "/etc/fcgivisor/fcgivisor.toml",
		Server: Server{
			RuntimeDir:      "/run/fcgivisor",
			ShutdownTimeout: 30 * time.Second,
			LogLevel:        "info",
			LogFormat:       "text",
		},
		Admin:  Admin{Listen: "unix:/run/fcgivisor/admin.sock"},
		Status: Status{ListenMode: 0o660},
		HTTP: HTTP{
			Listen:            []string{"127.0.0.1:8080"},
			ListenMode:        0o660,
			DocumentRoot:      "/srv/www",
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
			SendTimeout:       60 * time.Second,
			MaxHeaderBytes:    65536,
			MaxBodyBytes:      64 << 20,
			AccessLogFormat:   "combined",
			RequestBuffering:  true,
			Routes:            []*Route{{Prefix: "/", Pool: "app"}},
		},
		Pool: map[string]*Pool{"app": {
			Name:           "app",
			Command:        []string{"app-fcgi"},
			Scaling:        Static,
			Workers:        1,
			MinWorkers:     0,
			MaxWorkers:     1,
			MinIdle:        1,
			MaxIdle:        3,
			IdleTimeout:    10 * time.Second,
			Concurrency:    1,
			RequestTimeout: 60 * time.Second,
			QueueTimeout:   5 * time.Second,
			StopTimeout:    10 * time.Second,
			ListenMode:     0o660,
		}},
	}
	diffConfig(t, got, want)
}

func TestScalingDefaults(t *testing.T) {
	for _, tc := range []struct {
		pool                  string
		workers, min, maxWork int
	}{
		{`scaling = "static"`, 1, 0, 1},
		{"scaling = \"static\"\nworkers = 5", 5, 0, 5},
		{`scaling = "dynamic"`, 1, 0, 16},
		{"scaling = \"dynamic\"\nworkers = 2\nmin_workers = 1", 2, 1, 16},
		{`scaling = "ondemand"`, 1, 0, 16},
		// ondemand's floor is 0 whatever min_workers says.
		{"scaling = \"ondemand\"\nmin_workers = 3\nmax_workers = 8", 1, 0, 8},
	} {
		c, err := Parse("/x/f.toml", []byte("[pool.a]\ncommand = [\"a\"]\n"+tc.pool+"\n"))
		if err != nil {
			t.Errorf("%q: %v", tc.pool, err)
			continue
		}
		p := c.Pool["a"]
		if p.Workers != tc.workers || p.MinWorkers != tc.min || p.MaxWorkers != tc.maxWork {
			t.Errorf("%q: workers, min_workers, max_workers = %d, %d, %d; want %d, %d, %d",
				tc.pool, p.Workers, p.MinWorkers, p.MaxWorkers, tc.workers, tc.min, tc.maxWork)
		}
	}
}

// TestExplicitZeroKept checks that a key set to zero is not replaced by its
// default.
func TestExplicitZeroKept(t *testing.T) {
	c, err := Parse("/x/f.toml", []byte(`
[server]
shutdown_timeout = "0s"
[http]
listen = []
max_header_bytes = 0
[pool.a]
command = ["a"]
min_idle = 0
queue_timeout = "0s"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.ShutdownTimeout != 0 || c.HTTP.Listen == nil || len(c.HTTP.Listen) != 0 || c.HTTP.MaxHeaderBytes != 0 ||
		c.Pool["a"].MinIdle != 0 || c.Pool["a"].QueueTimeout != 0 {
		t.Errorf("explicit zeros replaced by defaults: %+v %+v %+v", c.Server, c.HTTP, *c.Pool["a"])
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/relative.toml")
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "fcgivisor.toml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, c *Config) {
		t.Helper()
		for _, tc := range []struct{ name, got, want string }{
			{"runtime_dir", c.Server.RuntimeDir, etc + "/run"},
			{"pid_file", c.Server.PIDFile, etc + "/run/fcgivisor.pid"},
			{"log_file", c.Server.LogFile, dir + "/log/fcgivisor.log"},
			{"admin.listen (default)", c.Admin.Listen, "unix:" + etc + "/run/admin.sock"},
			{"http.listen[0]", c.HTTP.Listen[0], "unix:" + etc + "/sock/http.sock"},
			{"http.listen[1]", c.HTTP.Listen[1], "127.0.0.1:8080"},
			{"document_root", c.HTTP.DocumentRoot, etc + "/www"},
			{"route[0].cgi", c.HTTP.Routes[0].CGI, etc + "/cgi-bin"},
			{"route[1].static", c.HTTP.Routes[1].Static, etc + "/www/public"},
			{"pool dir", c.Pool["app"].Dir, etc + "/app"},
			{"pool listen", c.Pool["app"].Listen, "unix:" + etc + "/app.sock"},
			{"command[0] (kept)", c.Pool["app"].Command[0], "./bin/app"},
		} {
			if tc.got != tc.want {
				t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
			}
		}
	}
	t.Run("absolute name", func(t *testing.T) {
		c, err := Load(filepath.Join(etc, "fcgivisor.toml"))
		if err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
	t.Run("relative name", func(t *testing.T) {
		t.Chdir(dir)
		c, err := Load("etc/fcgivisor.toml")
		if err != nil {
			t.Fatal(err)
		}
		if c.File != "etc/fcgivisor.toml" {
			t.Errorf("File = %q, want the name as given", c.File)
		}
		check(t, c)
	})
}

// TestAccessLogTarget checks the values http.access_log takes: the
// boolean it was before (true: stderr), "stderr", and paths, a relative
// one resolved against the config file's directory.
func TestAccessLogTarget(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  LogTarget
	}{
		{"true", LogStderr},
		{"false", ""},
		{`""`, ""},
		{`"stderr"`, LogStderr},
		{`"/var/log/a.log"`, "/var/log/a.log"},
		{`"log/a.log"`, "/etc/fv/log/a.log"},
		{`"./stderr"`, "/etc/fv/stderr"},
	} {
		c, err := Parse("/etc/fv/f.toml", []byte("[http]\naccess_log = "+tc.value+"\n"))
		if err != nil {
			t.Errorf("access_log = %s: %v", tc.value, err)
			continue
		}
		if c.HTTP.AccessLog != tc.want || c.HTTP.AccessLogFormat != "combined" {
			t.Errorf("access_log = %s: got %q (format %q), want %q (combined)", tc.value, c.HTTP.AccessLog, c.HTTP.AccessLogFormat, tc.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

// parseErrs parses src as /cfg/f.toml and returns its errors, failing the
// test if it parsed.
func parseErrs(t *testing.T, src string) Errors {
	t.Helper()
	c, err := Parse("/cfg/f.toml", []byte(src))
	if err == nil {
		t.Fatalf("parsed without error: %+v", c)
	}
	if c != nil {
		t.Errorf("got a Config with an error")
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("err %T %v is not a non-empty Errors", err, err)
	}
	var first *Error
	if !errors.As(err, &first) || first != errs[0] {
		t.Errorf("errors.As(*Error) does not give the first error")
	}
	return errs
}

const okPool = "[pool.php]\ncommand = [\"php-cgi\"]\n"

func TestErrors(t *testing.T) {
	long := "/" + strings.Repeat("d", 100)
	for _, tc := range []struct {
		name string
		src  string
		line int
		key  string
		msg  string // a substring of the message
	}{
		// Syntax, types and unknown keys.
		{"syntax", "[server]\nlog_level = \"info\"\nlog_format = text\n", 3, "", "syntax error"},
		{"unknown key", okPool + "workerz = 3\n", 3, "pool.php.workerz", `unknown key (did you mean "workers"?)`},
		{"unknown key case", okPool + "Workers = 3\n", 3, "pool.php.Workers", `unknown key (did you mean "workers"?)`},
		{"unknown table", "[servr]\nlog_level = \"info\"\n", 1, "servr", `unknown key (did you mean "server"?)`},
		{"unknown key in route", okPool + "[[http.route]]\npool = \"php\"\n[[http.route]]\npool = \"php\"\n# c\nprefixx = \"/\"\n", 8, "http.route[1].prefixx", "unknown key"},
		{"unknown dotted key", okPool + "limits.nofile = 3\n", 3, "pool.php.limits", "unknown key"},
		{"bad size", okPool + "max_memory = \"12mb\"\n", 3, "pool.php.max_memory", `unknown unit "mb"`},
		{"negative size", "[http]\nmax_body_bytes = -1\n", 2, "http.max_body_bytes", "must not be negative"},
		{"bad duration", okPool + "[[http.route]]\npool = \"php\"\n[[http.route]]\ncgi = \"/c\"\n\ntimeout = \"5x\"\n", 8, "http.route[1].timeout", `invalid duration: "5x"`},
		{"integer duration", "[server]\nshutdown_timeout = 30\n", 2, "server.shutdown_timeout", `expected a duration string such as "30s", got the integer 30`},
		{"integer mode", okPool + "listen_mode = 0o660\n", 3, "pool.php.listen_mode", "must be a quoted octal string"},
		{"mode above 0777", okPool + "listen_mode = \"01777\"\n", 3, "pool.php.listen_mode", "above 0777"},
		{"mode not octal", okPool + "listen_mode = \"0680\"\n", 3, "pool.php.listen_mode", "invalid mode"},
		{"wrong type", okPool + "workers = \"4\"\n", 3, "pool.php.workers", `expected an integer, got the string "4"`},
		{"wrong element type", "[pool.php]\ncommand = [\"php-cgi\",\n  3]\n", 3, "pool.php.command[1]", "expected a string"},
		{"not a table", "[pool]\nphp = 3\n", 2, "pool.php", "expected a table, got the integer 3"},
		{"route not an array", "[http.route]\npool = \"x\"\n", 1, "http.route", "expected an array of tables, got a table"},
		{"negative rlimit", okPool + "rlimit_nofile = -1\n", 3, "pool.php.rlimit_nofile", "must not be negative"},

		// [server]
		{"log_level", "[server]\nlog_level = \"verbose\"\n", 2, "server.log_level", `"verbose" is not a log level (debug, info, warn, error)`},
		{"log_format", "[server]\nlog_format = \"xml\"\n", 2, "server.log_format", `"xml" is not a log format (text, json)`},
		{"negative shutdown", "[server]\nshutdown_timeout = \"-1s\"\n", 2, "server.shutdown_timeout", "must not be negative, got -1s"},
		{"negative max_procs", "[server]\nmax_procs = -2\n", 2, "server.max_procs", "must not be negative"},
		{"empty runtime_dir", "[server]\nruntime_dir = \"\"\n", 2, "server.runtime_dir", "must not be empty"},

		// [http]
		{"negative idle", "[http]\nidle_timeout = \"-2s\"\n", 2, "http.idle_timeout", "must not be negative"},
		{"negative header bytes", "[http]\nmax_header_bytes = -5\n", 2, "http.max_header_bytes", "must not be negative"},
		{"negative connections", "[http]\nmax_connections = -1\n", 2, "http.max_connections", "must not be negative"},
		{"listen no port", "[http]\nlisten = [\"127.0.0.1:80\", \"localhost\"]\n", 2, "http.listen[1]", `invalid address "localhost"`},
		{"listen bad port", "[http]\nlisten = [\n  \"127.0.0.1:80\",\n  \"127.0.0.1:99999\",\n]\n", 4, "http.listen[1]", "is not a number from 0 to 65535"},
		{"listen named port", "[http]\nlisten = [\"127.0.0.1:http\"]\n", 2, "http.listen[0]", "is not a number"},
		{"listen empty unix", "[http]\nlisten = [\"unix:\"]\n", 2, "http.listen[0]", `no socket path after "unix:"`},
		{"unix path too long", "[http]\nlisten = [\"unix:" + long + "/http.sock\"]\n", 2, "http.listen[0]", "over the 107-byte limit"},
		{"relative unix path too long", "[http]\nlisten = [\"unix:" + strings.Repeat("d", 104) + "\"]\n", 2, "http.listen[0]", "over the 107-byte limit"},
		{"admin bad", "[admin]\nlisten = \"nohost\"\n", 2, "admin.listen", "invalid address"},
		{"default admin too long", "[server]\nruntime_dir = \"" + long + "\"\n", 2, "server.runtime_dir", "the default admin socket"},
		{"default admin dir too long", "[server]\nruntime_dir = \"" + long[:92] + "\"\n", 2, "server.runtime_dir", "in a directory over 91"},
		{"unix dir too long", "[http]\nlisten = [\"unix:" + long[:92] + "/h.sock\"]\n", 2, "http.listen[0]", "the socket's directory is 92 bytes long, over the 91-byte limit"},
		{"http listen_mode without unix", "[http]\nlisten = [\"127.0.0.1:80\"]\nlisten_mode = \"0666\"\n", 3, "http.listen_mode", "only applies to Unix socket addresses (unix:/path), and http.listen has none"},
		{"http listen_owner without unix", "[http]\nlisten_owner = \"www-data\"\n", 2, "http.listen_owner", "and http.listen has none"},
		{"http listen_mode integer", "[http]\nlisten = [\"/h.sock\"]\nlisten_mode = 0o666\n", 3, "http.listen_mode", "must be a quoted octal string"},
		{"http listen_mode above 0777", "[http]\nlisten = [\"/h.sock\"]\nlisten_mode = \"04666\"\n", 3, "http.listen_mode", "above 0777"},
		{"access_log integer", "[http]\naccess_log = 1\n", 2, "http.access_log", `expected "stderr", a file path, or "" (none), got the integer 1`},
		{"access_log stdout", "[http]\naccess_log = \"stdout\"\n", 2, "http.access_log", `"stdout" is not a target ("stderr", a file path, or "" for none; a file of that name: "./stdout")`},
		{"access_log dash", "[http]\naccess_log = \"-\"\n", 2, "http.access_log", `"-" is not a target`},
		{"access_log directory", "[http]\naccess_log = \"/var/log/\"\n", 2, "http.access_log", "names a directory"},
		{"access_log_format", "[http]\naccess_log = \"stderr\"\naccess_log_format = \"common\"\n", 3, "http.access_log_format", `"common" is not a known format (combined, json)`},

		// [status]
		{"status bad", "[status]\nlisten = \"9253\"\n", 2, "status.listen", "invalid address"},
		{"status dup admin", "[admin]\nlisten = \"127.0.0.1:9180\"\n[status]\nlisten = \"127.0.0.1:9180\"\n", 4, "status.listen", "already used by admin.listen"},
		{"status dup http", "[status]\nlisten = \"127.0.0.1:8080\"\n", 2, "status.listen", "already used by http.listen[0]"},
		{"status mode on tcp", "[status]\nlisten = \"0.0.0.0:9253\"\nlisten_mode = \"0666\"\n", 3, "status.listen_mode", `and status.listen "0.0.0.0:9253" is a TCP address`},
		{"status group without listen", "[status]\nlisten_group = \"prometheus\"\n", 2, "status.listen_group", "and status.listen is not set"},

		// Duplicate listen addresses.
		{"dup http", "[http]\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:0080\"]\n", 2, "http.listen[1]", `is already used by http.listen[0]`},
		{"dup ipv6", "[http]\nlisten = [\"[::1]:80\", \"[0:0::1]:80\"]\n", 2, "http.listen[1]", `is already used by http.listen[0]`},
		{"dup admin", "[http]\nlisten = [\"127.0.0.1:9180\"]\n[admin]\nlisten = \"127.0.0.1:9180\"\n", 4, "admin.listen", "already used by http.listen[0]"},
		{"dup pool unix", "[http]\nlisten = [\"unix:/cfg/run/x.sock\"]\n" + okPool + "listen = \"unix:run/../run/x.sock\"\n", 5, "pool.php.listen", "already used by http.listen[0]"},
		{"dup default admin", "[http]\nlisten = [\"/run/fcgivisor/admin.sock\"]\n", 0, "admin.listen", "already used by http.listen[0]"},
		{"pool listen bad", okPool + "listen = \"php.sock\"\n", 3, "pool.php.listen", "invalid address"},

		// Routes.
		{"route no target", okPool + "[[http.route]]\nprefix = \"/\"\n", 3, "http.route[0]", "no target: set exactly one of pool, cgi, static or status"},
		{"route two targets", okPool + "[[http.route]]\npool = \"php\"\ncgi = \"/c\"\n", 3, "http.route[0]", "pool and cgi are all set"},
		{"route no such pool", okPool + "[pool.go]\ncommand = [\"g\"]\n[[http.route]]\npool = \"php\"\n[[http.route]]\npool = \"phpp\"\n", 8, "http.route[1].pool", `no pool "phpp" (pools: go, php)`},
		{"route no pools", "[[http.route]]\npool = \"php\"\n", 2, "http.route[0].pool", `no pool "php" (there are no [pool.NAME] tables)`},
		{"route prefix", okPool + "[[http.route]]\nprefix = \"app\"\npool = \"php\"\n", 4, "http.route[0].prefix", `"app" must start with "/"`},
		{"route empty prefix", okPool + "[[http.route]]\nprefix = \"\"\npool = \"php\"\n", 4, "http.route[0].prefix", `"" must start with "/"`},
		{"route script", okPool + "[[http.route]]\npool = \"php\"\nscript = \"index.php\"\n", 5, "http.route[0].script", `must start with "/"`},
		{"script with suffix", okPool + "[[http.route]]\npool = \"php\"\nscript = \"/index.php\"\nsuffix = \".php\"\n", 6, "http.route[0].suffix", "does not apply with script"},
		{"script with index", okPool + "[[http.route]]\npool = \"php\"\nscript = \"/index.php\"\nindex = \"index.php\"\n", 6, "http.route[0].index", "does not apply with script"},
		{"pool index without suffix", okPool + "[[http.route]]\npool = \"php\"\nindex = \"index.php\"\n", 5, "http.route[0].index", "needs suffix on a pool route"},
		{"pool suffix with slash", okPool + "[[http.route]]\npool = \"php\"\nsuffix = \".php/\"\n", 5, "http.route[0].suffix", `".php/" must not contain "/"`},
		{"cgi key on pool route", okPool + "[[http.route]]\npool = \"php\"\nmax_concurrent = 3\n", 5, "http.route[0].max_concurrent", "only applies to cgi routes"},
		{"cgi max_concurrent", "[[http.route]]\ncgi = \"/c\"\nmax_concurrent = 0\n", 3, "http.route[0].max_concurrent", "must be at least 1, got 0"},
		{"script on cgi route", "[[http.route]]\ncgi = \"/c\"\nscript = \"/x.cgi\"\n", 3, "http.route[0].script", "does not apply to cgi routes"},
		{"index on cgi route", "[[http.route]]\ncgi = \"/c\"\nindex = \"index.cgi\"\n", 3, "http.route[0].index", "does not apply to cgi routes"},
		{"script on static route", "[[http.route]]\nstatic = \"/s\"\nscript = \"/index.php\"\n", 3, "http.route[0].script", "does not apply to static routes"},
		{"cgi env key", "[[http.route]]\ncgi = \"/c\"\nenv = { \"A=B\" = \"1\" }\n", 3, `http.route[0].env."A=B"`, "must not contain '='"},
		{"env on static route", "[[http.route]]\nstatic = \"/s\"\nenv = { A = \"1\" }\n", 3, "http.route[0].env", "only applies to pool and cgi routes"},
		{"env on status route", "[[http.route]]\nstatus = 404\nenv = { A = \"1\" }\n", 3, "http.route[0].env", "only applies to pool and cgi routes"},
		{"pool route env key =", okPool + "[[http.route]]\npool = \"php\"\nenv = { \"A=B\" = \"1\" }\n", 5, `http.route[0].env."A=B"`, "must not contain '='"},
		{"pool route env key empty", okPool + "[[http.route]]\npool = \"php\"\nenv = { \"\" = \"1\" }\n", 5, `http.route[0].env.""`, "empty variable name"},
		{"pool route env key NUL", okPool + "[[http.route]]\npool = \"php\"\nenv = { \"A\\u0000\" = \"1\" }\n", 5, `http.route[0].env."A\u0000"`, "must not contain '='"},
		{"pool route env value NUL", okPool + "[[http.route]]\npool = \"php\"\nenv = { A = \"x\\u0000\" }\n", 5, "http.route[0].env.A", "NUL"},
		{"cgi negative timeout", "[[http.route]]\ncgi = \"/c\"\ntimeout = \"-1m\"\n", 3, "http.route[0].timeout", "must not be negative"},
		{"status and static", "[[http.route]]\nstatic = \"/s\"\nstatus = 404\n", 1, "http.route[0]", "static and status are all set"},
		{"status 200", "[[http.route]]\nprefix = \"/data/\"\nstatus = 200\n", 3, "http.route[0].status", "200 is not a status a status route answers (403, 404, 410, 451)"},
		{"status 0", "[[http.route]]\nstatus = 0\n", 2, "http.route[0].status", "0 is not a status"},
		{"status as string", "[[http.route]]\nstatus = \"404\"\n", 2, "http.route[0].status", "expected an integer"},
		{"index on status route", "[[http.route]]\nstatus = 404\nindex = \"index.html\"\n", 3, "http.route[0].index", "does not apply to status routes (it only applies to pool and static routes)"},
		{"deny on status route", "[[http.route]]\nstatus = 404\ndeny = [\"/x/\"]\n", 3, "http.route[0].deny", "does not apply to status routes (it only applies to static routes)"},
		{"deny on pool route", okPool + "[[http.route]]\npool = \"php\"\ndeny = [\"*.ini\"]\n", 5, "http.route[0].deny", "does not apply to pool routes (it only applies to static routes)"},
		{"user on pool route", okPool + "[[http.route]]\npool = \"php\"\nuser = \"www-data\"\n", 5, "http.route[0].user", "does not apply to pool routes (it only applies to cgi and static routes)"},
		{"user on status route", "[[http.route]]\nstatus = 404\nuser = \"www-data\"\n", 3, "http.route[0].user", "does not apply to status routes"},
		{"group on static route", "[[http.route]]\nstatic = \"/s\"\nuser = \"www-data\"\ngroup = \"www-data\"\n", 4, "http.route[0].group", "does not apply to static routes (it only applies to cgi routes)"},
		{"deny empty", "[[http.route]]\nstatic = \"/s\"\ndeny = [\"/data/\", \"\"]\n", 3, "http.route[0].deny[1]", `"" matches nothing`},
		{"deny root", "[[http.route]]\nstatic = \"/s\"\ndeny = [\"/\"]\n", 3, "http.route[0].deny[0]", `"/" matches nothing`},
		{"deny unanchored path", "[[http.route]]\nstatic = \"/s\"\ndeny = [\n  \"conf/*.ini\",\n]\n", 4, "http.route[0].deny[0]", `has a "/" inside but does not start with "/": write "/conf/*.ini"`},
		{"deny dotdot", "[[http.route]]\nstatic = \"/s\"\ndeny = [\"/a/../b\"]\n", 3, "http.route[0].deny[0]", `has an empty, "." or ".." segment`},
		{"deny empty segment", "[[http.route]]\nstatic = \"/s\"\ndeny = [\"/a//b\"]\n", 3, "http.route[0].deny[0]", `has an empty, "." or ".." segment`},
		{"deny bad glob", "[[http.route]]\nstatic = \"/s\"\ndeny = [\"/data/[a-\"]\n", 3, "http.route[0].deny[0]", "is not a valid pattern (syntax error in pattern"},
		{"deny NUL", "[[http.route]]\nstatic = \"/s\"\ndeny = [\"a\\u0000\"]\n", 3, "http.route[0].deny[0]", "contains a NUL byte"},
		{"deny not array", "[[http.route]]\nstatic = \"/s\"\ndeny = \"*.ini\"\n", 3, "http.route[0].deny", "expected an array"},
		{"inline routes", okPool + "[http]\nroute = [\n  { pool = \"php\" },\n  { pool = \"nope\" },\n]\n", 6, "http.route[1].pool", `no pool "nope"`},

		// Pools.
		{"empty command", "[pool.php]\ncommand = []\n", 2, "pool.php.command", "missing or empty"},
		{"missing command", "[pool.php]\nworkers = 2\n", 1, "pool.php.command", "missing or empty"},
		{"empty program", "[pool.php]\ncommand = [\"\", \"-x\"]\n", 2, "pool.php.command[0]", "empty program name"},
		{"NUL in argument", "[pool.php]\ncommand = [\"php\", \"a\\u0000b\"]\n", 2, "pool.php.command[1]", "NUL"},
		{"scaling", okPool + "scaling = \"dynamik\"\n", 3, "pool.php.scaling", `"dynamik" is not a scaling mode (static, dynamic, ondemand)`},
		{"static workers 0", okPool + "workers = 0\n", 3, "pool.php.workers", "must be at least 1 for static scaling, got 0"},
		{"dynamic workers negative", okPool + "scaling = \"dynamic\"\nworkers = -1\n", 4, "pool.php.workers", "must not be negative, got -1"},
		{"min_workers negative", okPool + "scaling = \"dynamic\"\nmin_workers = -1\n", 4, "pool.php.min_workers", "must not be negative"},
		{"min over max", okPool + "scaling = \"dynamic\"\nmax_workers = 4\nmin_workers = 5\nworkers = 4\n", 5, "pool.php.min_workers", "5 is more than max_workers 4"},
		{"workers over max", okPool + "scaling = \"static\"\nworkers = 5\nmax_workers = 4\n", 4, "pool.php.workers", "5 is more than max_workers 4"},
		{"workers over default max", okPool + "scaling = \"dynamic\"\nworkers = 20\n", 4, "pool.php.workers", "20 is more than max_workers 16 (the default for dynamic scaling)"},
		{"workers under min", okPool + "scaling = \"dynamic\"\nworkers = 1\nmin_workers = 2\n", 4, "pool.php.workers", "1 is less than min_workers 2"},
		{"max_workers 0", okPool + "scaling = \"ondemand\"\nmax_workers = 0\n", 4, "pool.php.max_workers", "must be at least 1, got 0"},
		{"min_idle over max_idle", okPool + "min_idle = 4\n", 3, "pool.php.min_idle", "4 is more than max_idle 3"},
		{"concurrency", okPool + "concurrency = 0\n", 3, "pool.php.concurrency", "must be at least 1, got 0"},
		{"max_requests", okPool + "max_requests = -1\n", 3, "pool.php.max_requests", "must not be negative, got -1"},
		{"negative request_timeout", okPool + "request_timeout = \"-1s\"\n", 3, "pool.php.request_timeout", "must not be negative"},
		{"negative max_lifetime", okPool + "max_lifetime = \"-1h\"\n", 3, "pool.php.max_lifetime", "must not be negative"},
		{"pool name", "[pool.\"my pool\"]\ncommand = [\"x\"]\n", 1, `pool."my pool"`, "may only use letters, digits, '_' and '-'"},
		{"pool name dotted", "[pool.\"a.b\"]\ncommand = [\"x\"]\n", 1, `pool."a.b"`, "may only use letters"},
		{"env key =", okPool + "env = { \"A=B\" = \"1\" }\n", 3, `pool.php.env."A=B"`, "must not contain '='"},
		{"env key empty", okPool + "[pool.php.env]\nOK = \"1\"\n\"\" = \"2\"\n", 5, `pool.php.env.""`, "empty variable name"},
		{"env value NUL", okPool + "[pool.php.env]\nA = \"x\\u0000\"\n", 4, "pool.php.env.A", "NUL"},
		{"inherit_env empty", okPool + "inherit_env = [\"PATH\", \"\"]\n", 3, "pool.php.inherit_env[1]", "is not a variable name"},
		{"allowed_clients bad", okPool + "listen = \"127.0.0.1:9000\"\nallowed_clients = [\"10.0.0.0/8\", \"10.0.0.300\"]\n", 4, "pool.php.allowed_clients[1]", `"10.0.0.300" is not an IP address or CIDR prefix`},
		{"allowed_clients unix", okPool + "listen = \"/run/php.sock\"\nallowed_clients = [\"10.0.0.1\"]\n", 4, "pool.php.allowed_clients", "only applies to a TCP listen"},
		{"negative slowlog timeout", okPool + "request_slowlog_timeout = \"-1s\"\n", 3, "pool.php.request_slowlog_timeout", "must not be negative"},
		{"slowlog_command without timeout", okPool + "slowlog_command = [\"gdb\", \"-p\", \"{pid}\"]\n", 3, "pool.php.slowlog_command", "set request_slowlog_timeout"},
		{"slowlog_command empty", okPool + "request_slowlog_timeout = \"5s\"\nslowlog_command = []\n", 4, "pool.php.slowlog_command", "empty: give an argv"},
		{"slowlog_command empty name", okPool + "request_slowlog_timeout = \"5s\"\nslowlog_command = [\"\", \"{pid}\"]\n", 4, "pool.php.slowlog_command[0]", "empty program name"},
		{"slowlog_command relative", okPool + "request_slowlog_timeout = \"5s\"\nslowlog_command = [\"bin/dump\", \"{pid}\"]\n", 4, "pool.php.slowlog_command[0]", "give a full path, or a bare name"},
		{"slowlog_command NUL", okPool + "request_slowlog_timeout = \"5s\"\nslowlog_command = [\"cat\", \"a\\u0000\"]\n", 4, "pool.php.slowlog_command[1]", "contains a NUL byte"},
		{"worker socket too long", "[server]\nruntime_dir = \"" + long[:80] + "\"\n[pool.a_rather_long_pool_name]\ncommand = [\"x\"]\n", 3, "pool.a_rather_long_pool_name", "worker sockets " + long[:80] + "/w/a_rather_long_pool_name-NNNNNNNNNN.sock can be 122 bytes long, over the 107-byte limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrs(t, tc.src)
			if len(errs) != 1 {
				t.Errorf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.File != "/cfg/f.toml" || e.Line != tc.line || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %q\nwant /cfg/f.toml:%d: %s: ...%s...", e.Error(), tc.line, tc.key, tc.msg)
			}
		})
	}
}

func TestSeveralErrors(t *testing.T) {
	src := `[server]
log_level = "loud"
shutdown_timeout = "soon"

[http]
listen = ["127.0.0.1:8080", "127.0.0.1:8080"]

[[http.route]]
pool = "phpp"

[pool.php]
command = []
max_memory = "1 potato"
scaling = "dynamic"
min_idle = 9
extra = true
`
	errs := parseErrs(t, src)
	want := []string{
		`/cfg/f.toml:2: server.log_level: "loud" is not a log level (debug, info, warn, error)`,
		`/cfg/f.toml:3: server.shutdown_timeout: invalid duration: "soon"`,
		`/cfg/f.toml:6: http.listen[1]: "127.0.0.1:8080" is already used by http.listen[0]`,
		`/cfg/f.toml:9: http.route[0].pool: no pool "phpp" (pools: php)`,
		`/cfg/f.toml:12: pool.php.command: missing or empty`,
		`/cfg/f.toml:13: pool.php.max_memory: invalid size "1 potato"`,
		`/cfg/f.toml:15: pool.php.min_idle: 9 is more than max_idle 3`,
		`/cfg/f.toml:16: pool.php.extra: unknown key`,
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i := range min(len(errs), len(want)) {
		if !strings.HasPrefix(errs[i].Error(), want[i]) {
			t.Errorf("error %d:\n got  %s\n want %s...", i, errs[i], want[i])
		}
	}
	if n := strings.Count(errs.Error(), "\n"); n != len(errs)-1 {
		t.Errorf("Error() has %d newlines for %d errors", n, len(errs))
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 12, Key: "pool.php.workerz", Msg: "unknown key"}, "f.toml:12: pool.php.workerz: unknown key"},
		{Error{File: "f.toml", Key: "admin.listen", Msg: "bad"}, "f.toml: admin.listen: bad"},
		{Error{File: "f.toml", Line: 3, Msg: "syntax error: x"}, "f.toml:3: syntax error: x"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestPoolsAndSummary(t *testing.T) {
	c, err := Parse("fcgivisor.toml", []byte(`
[pool.php]
command = ["php-cgi"]
[pool.go]
command = ["go-app"]
[pool.b]
command = ["b"]
[[http.route]]
pool = "php"
[[http.route]]
pool = "go"
[[http.route]]
static = "/srv"
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range c.Pools() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "b,go,php" {
		t.Errorf("Pools() = %s, want b,go,php", got)
	}
	want := "fcgivisor.toml: ok: 3 pools (b, go, php), 3 routes, listen 127.0.0.1:8080, admin unix:/run/fcgivisor/admin.sock"
	if got := c.Summary(); got != want {
		t.Errorf("Summary() =\n %q\nwant\n %q", got, want)
	}

	c, err = Parse("f.toml", []byte("[http]\nlisten = []\n[admin]\nlisten = \"127.0.0.1:9180\"\n[pool.x]\ncommand = [\"x\"]\n[[http.route]]\npool = \"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = "f.toml: ok: 1 pool (x), 1 route, no http listen, admin 127.0.0.1:9180"
	if got := c.Summary(); got != want {
		t.Errorf("Summary() =\n %q\nwant\n %q", got, want)
	}

	c, err = Parse("/etc/f.toml", []byte("[status]\nlisten = \"0.0.0.0:9253\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = "/etc/f.toml: ok: 0 pools, 0 routes, listen 127.0.0.1:8080, admin unix:/run/fcgivisor/admin.sock, status 0.0.0.0:9253"
	if got := c.Summary(); got != want {
		t.Errorf("Summary() =\n %q\nwant\n %q", got, want)
	}
}

// TestAdminListenLoopbackOnly: admin.listen serves /reload and /stop
// without authentication, so conf (hence check, run and reload) refuses
// any TCP address another host could reach, naming the key, the line and
// the fix; Unix sockets and loopback IPs pass (issue 10).
func TestAdminListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{
		"unix:/run/x/admin.sock", "/run/x/admin.sock", "127.0.0.1:9180", "127.8.9.10:9180",
		"[::1]:9180", "[::1%lo]:9180", "[::ffff:127.0.0.1]:9180", "127.0.0.1:0",
	} {
		if _, err := Parse("/cfg/f.toml", []byte("[admin]\nlisten = "+strconv.Quote(addr)+"\n")); err != nil {
			t.Errorf("admin.listen = %q refused: %v", addr, err)
		}
	}
	for _, tc := range []struct{ addr, why string }{
		{"0.0.0.0:19100", "0.0.0.0 is not a loopback address"},
		{":19100", "an empty host means every address of the machine"},
		{"[::]:19100", ":: is not a loopback address"},
		{"192.0.2.7:19100", "192.0.2.7 is not a loopback address"},
		{"[2001:db8::1]:19100", "2001:db8::1 is not a loopback address"},
		{"[fe80::1%eth0]:19100", "fe80::1%eth0 is not a loopback address"},
		{"[::ffff:10.0.0.1]:19100", "::ffff:10.0.0.1 is not a loopback address"},
		{"localhost:19100", `"localhost" is a host name, which may resolve to any address`},
		{"admin.example.com:19100", `"admin.example.com" is a host name`},
	} {
		errs := parseErrs(t, "[server]\nlog_level = \"info\"\n\n[admin]\nlisten = "+strconv.Quote(tc.addr)+"\n")
		if len(errs) != 1 {
			t.Errorf("admin.listen = %q: %d errors, want 1:\n%v", tc.addr, len(errs), errs)
			continue
		}
		got := errs[0].Error()
		for _, want := range []string{
			"/cfg/f.toml:5: admin.listen: " + strconv.Quote(tc.addr) + ": " + tc.why,
			"whoever reaches admin.listen can stop and reload fcgivisor",
			`"127.0.0.1:19100"`,
			"set [status] listen = " + strconv.Quote(tc.addr) + " instead",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("admin.listen = %q:\n got  %s\n want it to contain %s", tc.addr, got, want)
			}
		}
	}
}

// TestMaxUnixDir: conf refuses exactly the directories socket.Listen
// cannot bind a temporary socket in.
func TestMaxUnixDir(t *testing.T) {
	if maxUnixDir != socket.MaxDirLen {
		t.Fatalf("conf's maxUnixDir is %d, socket.MaxDirLen %d", maxUnixDir, socket.MaxDirLen)
	}
}

// TestConcurrentReaders shares one Config between goroutines; with -race it
// fails if any method writes to it.
func TestConcurrentReaders(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = c.Summary()
			for _, p := range c.Pools() {
				_ = p.AllowedPrefixes()
				_ = p.ListenMode.String()
				_ = p.MaxMemory.String()
			}
		})
	}
	wg.Wait()
}

func TestAllowedPrefixes(t *testing.T) {
	p := &Pool{}
	if got := fmt.Sprint(p.AllowedPrefixes()); got != "[127.0.0.0/8 ::1/128]" {
		t.Errorf("empty allowed_clients: %s, want loopback", got)
	}
	p.AllowedClients = []string{"10.1.2.3/8", "192.168.1.7", "::1", "fe80::/10", "::ffff:10.9.8.7", "::ffff:172.16.0.0/108"}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("10.9.8.7/32"), // IPv4-mapped entries are unmapped, as clients are
		netip.MustParsePrefix("172.16.0.0/12"),
	}
	if got := p.AllowedPrefixes(); !reflect.DeepEqual(got, want) {
		t.Errorf("AllowedPrefixes() = %v, want %v", got, want)
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in, network, address, err string
	}{
		{"unix:/run/x.sock", "unix", "/run/x.sock", ""},
		{"/run/x.sock", "unix", "/run/x.sock", ""},
		{"unix:rel/x.sock", "unix", "rel/x.sock", ""},
		{"127.0.0.1:8080", "tcp", "127.0.0.1:8080", ""},
		{"localhost:0", "tcp", "localhost:0", ""},
		{":9000", "tcp", ":9000", ""},
		{"[::1]:9000", "tcp", "[::1]:9000", ""},
		{"0.0.0.0:65535", "tcp", "0.0.0.0:65535", ""},
		{"", "", "", "empty address"},
		{"unix:", "", "", "no socket path"},
		{"localhost", "", "", `invalid address "localhost"`},
		{"::1:80", "", "", "invalid address"},
		{"host:65536", "", "", "not a number from 0 to 65535"},
		{"host:-1", "", "", "not a number"},
		{"host:http", "", "", "not a number"},
		{"bad host:80", "", "", "bad host"},
		{"unix:/" + strings.Repeat("x", 106), "unix", "/" + strings.Repeat("x", 106), ""},
		{"unix:/" + strings.Repeat("x", 107), "", "", "108 bytes, over the 107-byte limit"},
	} {
		network, address, err := ParseAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseAddr(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || network != tc.network || address != tc.address {
			t.Errorf("ParseAddr(%q) = %q, %q, %v; want %q, %q", tc.in, network, address, err, tc.network, tc.address)
		}
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		str  string
	}{
		{"64MiB", 64 << 20, "64MiB"},
		{"512KiB", 512 << 10, "512KiB"},
		{"1GiB", 1 << 30, "1GiB"},
		{"2TiB", 2 << 40, "2TiB"},
		{"10MB", 10_000_000, "10MB"},
		{"3KB", 3000, "3KB"},
		{"5GB", 5e9, "5GB"},
		{"1TB", 1e12, "1TB"},
		{"100", 100, "100B"},
		{"100B", 100, "100B"},
		{"1024", 1024, "1KiB"},
		{"64 MiB", 64 << 20, "64MiB"},
		{"0", 0, "0"},
		{"", 0, "0"},
	} {
		var s Size
		if err := s.UnmarshalText([]byte(tc.in)); err != nil {
			t.Errorf("UnmarshalText(%q): %v", tc.in, err)
			continue
		}
		if s != tc.want || s.String() != tc.str {
			t.Errorf("UnmarshalText(%q) = %d (%s), want %d (%s)", tc.in, int64(s), s, int64(tc.want), tc.str)
		}
		var back Size
		if err := back.UnmarshalText([]byte(s.String())); err != nil || back != s {
			t.Errorf("round trip of %d via %q gave %d, %v", int64(s), s.String(), int64(back), err)
		}
	}
	for _, in := range []string{"-1", "-64MiB", "64mb", "64 M", "1.5GiB", "MiB", "abc", "9223372036854775808", "9000000TiB", "0x10"} {
		var s Size
		err := s.UnmarshalText([]byte(in))
		if err == nil || !strings.Contains(err.Error(), "KiB, MiB, GiB, TiB") && !strings.Contains(err.Error(), "too large") {
			t.Errorf("UnmarshalText(%q) error = %v, want one naming the units", in, err)
		}
	}
	// Every Size prints as something UnmarshalText reads back.
	for _, v := range []Size{1, 999, 1000, 1023, 1024, 1536, 1 << 20, 1e6 + 1, 3 << 40, 1<<62 + 1, 1<<63 - 1} {
		var back Size
		if err := back.UnmarshalText([]byte(v.String())); err != nil || back != v {
			t.Errorf("round trip of %d via %q gave %d, %v", int64(v), v.String(), int64(back), err)
		}
	}
	if b, _ := Size(8 << 20).MarshalText(); string(b) != "8MiB" {
		t.Errorf("MarshalText = %q", b)
	}
}

func TestFileMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want FileMode
	}{
		{"0660", 0o660}, {"660", 0o660}, {"0o600", 0o600}, {"0777", 0o777}, {"0", 0}, {"0000", 0},
	} {
		var m FileMode
		if err := m.UnmarshalText([]byte(tc.in)); err != nil || m != tc.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tc.in, m, err, tc.want)
		}
	}
	for _, in := range []string{"", "1000", "01777", "0680", "rw-rw----", "-0660", "+660", "0x1ff"} {
		var m FileMode
		if err := m.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", in, m)
		}
	}
	if s := FileMode(0o640).String(); s != "0640" {
		t.Errorf("String() = %q, want 0640", s)
	}
	if p := FileMode(0o640).Perm(); p != 0o640 {
		t.Errorf("Perm() = %v", p)
	}
}

func TestAdminAddressFromInvalidFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{"[server]\nruntime_dir = \"run\"\n[pool.x]\nworkerz = 1\n", "unix:" + filepath.Join(dir, "run", "admin.sock")},
		{"[admin]\nlisten = \"127.0.0.1:9180\"\n[http]\nbogus = true\n", "127.0.0.1:9180"},
		{"[admin]\nlisten = \"unix:a.sock\"\n", "unix:" + filepath.Join(dir, "a.sock")},
		{"[pool.x]\ncommand = []\n", "unix:/run/fcgivisor/admin.sock"},
	} {
		p := filepath.Join(dir, "f.toml")
		os.WriteFile(p, []byte(tc.body), 0o644)
		got, err := AdminAddress(p)
		if err != nil || got != tc.want {
			t.Errorf("AdminAddress(%q) = %q, %v; want %q", tc.body, got, err, tc.want)
		}
	}
	p := filepath.Join(dir, "broken.toml")
	os.WriteFile(p, []byte("[server\n"), 0o644)
	if _, err := AdminAddress(p); err == nil {
		t.Error("no error for a file that is not TOML")
	}
}
