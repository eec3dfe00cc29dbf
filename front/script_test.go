package front

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// scriptTree builds a document root with every kind of name a pool route
// with suffix ".php" may be asked for, and a file outside it.
func scriptTree(t *testing.T) (docRoot string) {
	t.Helper()
	base := t.TempDir()
	docRoot = filepath.Join(base, "www")
	for _, d := range []string{"sub", "dir.php", "dir.php/inner", ".git", "blog"} {
		if err := os.MkdirAll(filepath.Join(docRoot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"index.php":      "<?php",
		"sub/y.php":      "<?php",
		"dir.php/a.php":  "<?php",
		"upload.txt":     "<?php echo 'txt as php';",
		".hidden.php":    "<?php",
		".git/x.php":     "<?php",
		"x.PHP":          "<?php",
		"x.php.txt":      "<?php",
		"x.phps":         "<?php",
		"blog/index.php": "<?php",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(docRoot, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "outside.php"), []byte("<?php"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"inlink.php":  "index.php",                         // stays inside: followed
		"uplink.php":  "../outside.php",                    // leaves the root
		"abslink.php": filepath.Join(base, "outside.php"),  // leaves the root, absolute
		"abs-in.php":  filepath.Join(docRoot, "index.php"), // absolute, even when it points inside
		"dirlink":     "..",                                // a directory link out
		"txtlink.php": "upload.txt",                        // a .php name for a file that is not
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(docRoot, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(docRoot, "fifo.php"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(docRoot, "sock.php"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return docRoot
}

func TestIsScript(t *testing.T) {
	docRoot := scriptTree(t)
	device := filepath.Join(docRoot, "null.php")
	haveDevice := syscall.Mknod(device, syscall.S_IFCHR|0o666, 1<<8|3) == nil // /dev/null's 1:3; needs root
	for _, tc := range []struct {
		scriptName string
		want       bool
	}{
		{"/index.php", true},
		{"/sub/y.php", true},
		{"/blog/index.php", true},
		{"/dir.php/a.php", true}, // a directory named *.php on the way is fine
		{"/inlink.php", true},    // a symlink that stays inside
		{"/txtlink.php", true},   // ... whatever its target's name: the check is by the name asked for

		{"/missing.php", false},
		{"/sub/missing.php", false},
		{"/upload.txt/foo.php", false}, // a file is no directory: php-cgi's fix_pathinfo walk would run it
		{"/dir.php", false},            // a directory
		{"/fifo.php", false},
		{"/sock.php", false},
		{"/null.php", false}, // a device (when it could be made)
		{"/uplink.php", false},
		{"/abslink.php", false},
		{"/abs-in.php", false}, // os.Root refuses absolute links
		{"/dirlink/outside.php", false},
		{"/../outside.php", false},
		{"/sub/../index.php", false},
		{"/./index.php", false},
		{"//index.php", false},
		{"/sub//y.php", false},
		{"/.hidden.php", false},
		{"/.git/x.php", false},
		{"/.php", false},
		{"index.php", false}, // not absolute
		{"", false},
		{"/index.php\x00.txt", false},
	} {
		if tc.scriptName == "/null.php" && !haveDevice {
			t.Logf("%s: not checked: mknod needs root", tc.scriptName)
			continue
		}
		got, err := isScript(docRoot, tc.scriptName)
		if err != nil || got != tc.want {
			t.Errorf("isScript(%q) = %v, %v; want %v", tc.scriptName, got, err, tc.want)
		}
	}
	// A missing document root holds no script, and is no error (warned
	// about at start).
	if got, err := isScript(filepath.Join(docRoot, "nope"), "/index.php"); got || err != nil {
		t.Errorf("missing document root: %v, %v", got, err)
	}
}

// The suffix ends a segment exactly, case and all, as nginx's
// `location ~ \.php$` would: others do not match the route at all.
func TestSuffixIsExact(t *testing.T) {
	rt := &route{cfg: &conf.Route{Prefix: "/", Suffix: ".php"}}
	for _, p := range []string{"/x.PHP", "/x.Php/y", "/x.php.txt", "/x.phps", "/x.php~", "/x.php%00", "/xphp"} {
		if sn, pi, ok := rt.match(p); ok {
			t.Errorf("match(%q) = %q, %q: want no match", p, sn, pi)
		}
	}
}

// scriptServer is a front with a pool route for ".php" (index "index.php")
// on docRoot, then a static route on other. The pool is never started and
// has no queue_timeout, so a request it gets is answered 503 at once: 503
// means "forwarded".
func scriptServer(t *testing.T, docRoot, other string) *Server {
	t.Helper()
	pool := supervisor.NewPool(&conf.Pool{
		Name: "php", Command: []string{"/bin/false"}, Scaling: conf.Static,
		Workers: 1, MaxWorkers: 1, Concurrency: 1,
	}, supervisor.Env{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) (string, bool) { return "", false }})
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.bufs.New = func() any { return &buffers{br: bufio.NewReaderSize(nil, 8<<10)} }
	cfg := &conf.Config{HTTP: conf.HTTP{DocumentRoot: docRoot, MaxBodyBytes: 1 << 20, Routes: []*conf.Route{
		{Prefix: "/", Suffix: ".php", Index: "index.php", Pool: "php"},
		{Prefix: "/", Static: other},
	}}}
	tb, err := newTable(cfg, map[string]*supervisor.Pool{"php": pool}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.table.Store(tb)
	return s
}

// A pool route with suffix forwards an existing script only; anything
// else goes on to the next route (here static, which serves no .php
// either: its missing.php is never served), else 404.
func TestPoolRouteForwardsOnlyScripts(t *testing.T) {
	docRoot := scriptTree(t)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "missing.php"), []byte("<?php source"), 0o644)
	os.WriteFile(filepath.Join(other, "other.txt"), []byte("served by the next route"), 0o644)
	s := scriptServer(t, docRoot, other)
	for _, tc := range []struct {
		target string
		code   int
		body   string
	}{
		{"/index.php", 503, ""},
		{"/index.php/foo/bar", 503, ""},
		{"/", 503, ""}, // index.php exists
		{"/blog/", 503, ""},
		{"/sub/y.php/upload.txt", 503, ""},
		{"/sub/", 404, ""}, // no sub/index.php
		{"/missing.php", 404, ""},
		{"/other.txt", 200, "served by the next route"},
		{"/upload.txt/foo.php", 404, ""},
		{"/upload.txt/foo.php/x", 404, ""},
		{"/dir.php", 404, ""},
		{"/dir.php/", 404, ""}, // dir.php/index.php: no
		{"/fifo.php", 404, ""},
		{"/uplink.php", 404, ""},
		{"/%2e%2e/outside.php", 404, ""},
		{"/sub/%2e%2e/index.php", 404, ""},
		{"//index.php", 404, ""},
		{"/.hidden.php", 404, ""},
		{"/x.PHP", 404, ""},
		{"/x.php.txt", 404, ""},
	} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.target, nil))
		if w.Code != tc.code || (tc.body != "" && w.Body.String() != tc.body) {
			t.Errorf("GET %s: %d %q; want %d %q", tc.target, w.Code, w.Body.String(), tc.code, tc.body)
		}
	}
}

// No PATH_TRANSLATED, for pools and cgi scripts alike: php-cgi with
// cgi.fix_pathinfo=0 would run the file it names.
func TestMetaVarsWithoutPathTranslated(t *testing.T) {
	r := httptest.NewRequest("GET", "/index.php/upload.txt", nil)
	m := params(metaVars(nil, &request{r: r, scriptName: "/index.php", pathInfo: "/upload.txt", documentRoot: "/srv/www"}))
	if pt, ok := m["PATH_TRANSLATED"]; ok {
		t.Errorf("PATH_TRANSLATED = %q sent", pt)
	}
	if m["SCRIPT_FILENAME"] != "/srv/www/index.php" || m["PATH_INFO"] != "/upload.txt" {
		t.Errorf("SCRIPT_FILENAME %q PATH_INFO %q", m["SCRIPT_FILENAME"], m["PATH_INFO"])
	}
}

// BenchmarkIsScript is the cost a pool route with suffix adds per request.
func BenchmarkIsScript(b *testing.B) {
	docRoot := b.TempDir()
	os.MkdirAll(filepath.Join(docRoot, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(docRoot, "index.php"), nil, 0o644)
	os.WriteFile(filepath.Join(docRoot, "a", "b", "c.php"), nil, 0o644)
	for _, name := range []string{"/index.php", "/a/b/c.php"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if ok, _ := isScript(docRoot, name); !ok {
					b.Fatal("not a script")
				}
			}
		})
	}
}
