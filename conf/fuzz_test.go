package conf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzConfig parses arbitrary bytes as a config file. Parse must not
// panic; an error must be a non-empty Errors whose every entry names the
// file and a line of it or a key (the operator must find what to fix); a
// config it accepts must hold what validation promises, and its Dump must
// parse back into an equal config.
func FuzzConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"[http]\nlisten = []\n",
		"[server\n",
		"key = = 3\n",
		"\"\r\n", // toml reported line 0 for it
		"[http]\nlisten = [\"127.0.0.1:80\", \"localhost\"]\n",
		"[http]\nmax_connections = -1\nmax_header_bytes = 1.5\n",
		"[http.route]\npool = \"x\"\n",
		"[[http.route]]\npool = \"php\"\ncgi = \"/c\"\n[[http.route]]\nprefix = \"x\"\nstatic = \"s\"\n",
		"http.route = [{ prefix = \"/a/\", pool = \"p\" }, 3]\n",
		"[pool]\nphp = 3\n",
		"[pool]\n[http]\nroute = []\n", // empty, not nil: Dump keeps them so
		okPool + "workers = \"4\"\nlisten_mode = \"0680\"\nmax_memory = \"12mb\"\n",
		okPool + "scaling = \"dynamic\"\nmin_workers = 5\nmax_workers = 2\nmin_idle = 4\nmax_idle = 1\n",
		okPool + "listen = \"unix:/a\"\n[pool.b]\ncommand = [\"b\"]\nlisten = \"unix:/a\"\n",
		okPool + "env = { \"A=B\" = \"x\", \"\" = \"y\" }\n",
		"[pool.\"bad name\"]\ncommand = []\n",
		"[server]\nshutdown_timeout = 30\nlog_level = \"verbose\"\nruntime_dir = \"\"\n",
		"[admin]\nlisten = \"unix:" + strings.Repeat("x", 120) + "\"\n",
		"[server]\nruntime_dir = \"/run/\u00e9\"\n[[http.route]]\nprefix = \"/\u00e9/\"\nscript = \"x\"\npool = \"php\"\n" + okPool,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "/etc/fcgivisor/fuzz.toml"
		cfg, err := Parse(name, data)
		if err == nil {
			checkValid(t, cfg, name)
			checkDump(t, cfg)
			return
		}
		if cfg != nil {
			t.Fatal("a Config with an error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %v is not a non-empty Errors", err, err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range errs {
			if e.File != name || e.Line == 0 && e.Key == "" || e.Line < 0 || e.Line > lines || e.Msg == "" {
				t.Fatalf("error %q (line %d of %d, key %q): want the file, a line of it or a key, and a message", e, e.Line, lines, e.Key)
			}
		}
	})
}

// checkDump checks that c's Dump, read from another directory, gives c.
func checkDump(t *testing.T, c *Config) {
	t.Helper()
	var b strings.Builder
	if err := c.Dump(&b); err != nil {
		t.Fatal(err)
	}
	got, err := Parse("/elsewhere/dump.toml", []byte(b.String()))
	if err != nil {
		t.Fatalf("the dump does not parse: %v\n%s", err, b.String())
	}
	got.File = c.File
	if !reflect.DeepEqual(got, c) {
		diffConfig(t, got, c)
		t.Fatalf("the dump parses into another config:\n%s", b.String())
	}
}

// checkValid checks what Load promises of a config it accepts.
func checkValid(t *testing.T, c *Config, name string) {
	t.Helper()
	if c == nil || c.File != name || c.Server.RuntimeDir == "" || !filepath.IsAbs(c.Server.RuntimeDir) {
		t.Fatalf("accepted config %+v: want File %q and an absolute runtime_dir", c, name)
	}
	h := c.HTTP
	if h.MaxConnections < 0 || h.MaxHeaderBytes < 0 || h.MaxBodyBytes < 0 || h.ReadHeaderTimeout < 0 || h.IdleTimeout < 0 {
		t.Fatalf("accepted negative [http] limits: %+v", h)
	}
	for i, r := range h.Routes {
		targets := 0
		for _, set := range []bool{r.Pool != "", r.CGI != "", r.Static != "", r.Status != 0} {
			if set {
				targets++
			}
		}
		if !strings.HasPrefix(r.Prefix, "/") || targets != 1 || r.Script != "" && !strings.HasPrefix(r.Script, "/") {
			t.Fatalf("accepted route %d %+v", i, r)
		}
		if _, ok := c.Pool[r.Pool]; r.Pool != "" && !ok {
			t.Fatalf("accepted route %d to an undefined pool %q", i, r.Pool)
		}
	}
	for n, p := range c.Pool {
		if p.Name != n || len(p.Command) == 0 || p.MaxWorkers < 1 || p.Concurrency < 1 || p.MinWorkers > p.MaxWorkers {
			t.Fatalf("accepted pool %q %+v", n, p)
		}
	}
}
