package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dumpCases are configs whose dump must load back equal: the test files,
// the examples, and files that use each kind of route and table, each
// key type, values that need escaping, and keys Load refuses in some
// places.
var dumpCases = map[string]string{
	"every table and kind of route": `
[server]
shutdown_timeout = "1m30s"
log_file = "log/fv.log"
[status]
listen = "unix:run/status.sock"
listen_mode = "0600"
listen_group = "adm"
[http]
listen = ["127.0.0.1:0", "unix:http.sock"]
listen_owner = "www-data"
idle_timeout = "250ms"
send_timeout = "0s"
max_body_bytes = "1000KiB"
access_log = true
request_buffering = false
[[http.route]]
prefix = "/php/"
suffix = ".php"
index = "index.php"
pool = "php"
env = { "A B" = "x\"y\\z\u0001\ttab", "é" = "ü" }
[[http.route]]
prefix = "/front/"
script = "/index.php"
pool = "php"
[[http.route]]
prefix = "/cgi-bin/"
suffix = ".cgi"
cgi = "/usr/lib/cgi-bin"
timeout = "0s"
user = "nobody"
env = {}
[[http.route]]
prefix = "/data/"
suffix = ".ini"
status = 451
[[http.route]]
static = "/srv/www"
index = "index.html"
deny = ["/private/", "*.bak"]
[pool.php]
command = ["/usr/bin/php-cgi", "-d", "x=\"1\""]
env = { PHP_FCGI_MAX_REQUESTS = "0" }
inherit_env = []
scaling = "ondemand"
min_workers = 3
idle_timeout = "1h"
max_lifetime = "2h30m"
max_memory = "1536MiB"
listen = "127.0.0.1:9000"
listen_mode = "0640"
allowed_clients = ["10.0.0.0/8"]
[pool.go-2]
command = ["./go"]
dir = "app"
scaling = "dynamic"
workers = 2
min_workers = 1
listen = "/run/go.sock"
allowed_clients = []
`,
	"no http listen, no routes": "[http]\nlisten = []\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n",
	"empty":                     "",
}

// loadDump dumps c, writes the dump to a file in another directory and
// loads it.
func loadDump(t *testing.T, c *Config) (*Config, string) {
	t.Helper()
	var b strings.Builder
	if err := c.Dump(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dumped.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("the dump does not load: %v\n%s", err, b.String())
	}
	got.File = c.File
	return got, b.String()
}

// TestDumpLoadsBackEqual: dump, write, Load gives a Config equal to the
// original, for the test files, the examples and dumpCases.
func TestDumpLoadsBackEqual(t *testing.T) {
	files := []string{"testdata/full.toml", "testdata/minimal.toml", "testdata/relative.toml",
		"../examples/quickstart.toml", "../examples/all-languages.toml"}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			c, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			got, text := loadDump(t, c)
			diffConfig(t, got, c)
			if t.Failed() {
				t.Logf("dump:\n%s", text)
			}
		})
	}
	for name, src := range dumpCases {
		t.Run(name, func(t *testing.T) {
			c, err := Parse("/etc/fv/fcgivisor.toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			got, text := loadDump(t, c)
			diffConfig(t, got, c)
			if t.Failed() {
				t.Logf("dump:\n%s", text)
			}
		})
	}
}

// TestDumpEveryKey: the dump of testdata/full.toml sets every key of the
// schema, and the dump of a file that sets nothing shows the defaults,
// written as a user would write them.
func TestDumpEveryKey(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	c.Dump(&b)
	for _, k := range missingKeys(b.String()) {
		t.Errorf("the dump of testdata/full.toml does not set %s", k)
	}

	c, err = Parse("/etc/fcgivisor/fcgivisor.toml", []byte("[pool.app]\ncommand = [\"app\"]\n[[http.route]]\npool = \"app\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	c.Dump(&b)
	for _, want := range []string{
		"[server]\nruntime_dir = \"/run/fcgivisor\"\npid_file = \"\"\nshutdown_timeout = \"30s\"\n",
		"[admin]\nlisten = \"unix:/run/fcgivisor/admin.sock\"\n",
		"[status]\nlisten = \"\"\n\n",
		"listen = [\"127.0.0.1:8080\"]\ndocument_root = \"/srv/www\"\n",
		"max_body_bytes = \"64MiB\"\naccess_log = \"\"\naccess_log_format = \"combined\"\nrequest_buffering = true\n",
		"[[http.route]]\nprefix = \"/\"\nsuffix = \"\"\nindex = \"\"\nscript = \"\"\npool = \"app\"\n\n",
		"[pool.app]\ncommand = [\"app\"]\ndir = \"\"\nuser = \"\"\ngroup = \"\"\nscaling = \"static\"\nworkers = 1\nmin_workers = 0\nmax_workers = 1\n",
		"idle_timeout = \"10s\"\n", "max_memory = \"0\"\n", "request_timeout = \"1m\"\n",
		"listen = \"\"\nrlimit_nofile = 0\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the dump of defaults lacks\n%s\ndump:\n%s", want, b.String())
		}
	}
	for _, absent := range []string{"listen_mode", "listen_owner", "env", "inherit_env", "allowed_clients", "deny", "timeout = \"1m\"\nmax_concurrent"} {
		if strings.Contains(b.String(), absent) {
			t.Errorf("the dump of defaults has %q, which Load would refuse there or read back as empty:\n%s", absent, b.String())
		}
	}
}

func TestDumpDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Hour: "1h", 90 * time.Minute: "1h30m", 2 * time.Minute: "2m", 250 * time.Millisecond: "250ms",
		time.Minute + 500*time.Millisecond: "1m0.5s", 36 * time.Hour: "36h", time.Hour + time.Second: "1h0m1s",
	} {
		got := dumpDuration(d)
		if back, err := time.ParseDuration(got); got != want || err != nil || back != d {
			t.Errorf("%v: %q (reads back as %v, %v), want %q", d, got, back, err, want)
		}
	}
}
