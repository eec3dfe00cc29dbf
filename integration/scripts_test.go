package integration

// Only real scripts run: a pool route with suffix forwards a request to
// php-cgi only when its SCRIPT_NAME is an existing regular file under
// document_root, and PATH_INFO requests work with cgi.fix_pathinfo=1
// (php-cgi's default) and 0 (the usual hardening) alike.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// probePHP is every script that may run: it says which file ran, with
// which variables, under which cgi.fix_pathinfo.
const probePHP = `<?php
header('Content-Type: text/plain');
echo 'file=', __FILE__, "\n";
echo 'fix_pathinfo=', ini_get('cgi.fix_pathinfo'), "\n";
foreach (['SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO', 'PATH_TRANSLATED'] as $k) {
    echo $k, '=', $_SERVER[$k] ?? '(unset)', "\n";
}
`

// canaryPHP is what must never run: it leaves a file named after itself
// in the canary directory %s, and says so.
const canaryPHP = `<?php
file_put_contents(%q . '/' . str_replace('/', '_', __FILE__), 'ran');
echo 'EXECUTED ', __FILE__, "\n";
`

// scriptsTree lays out a document root (and what lies beside it) for
// TestPoolRouteScripts, readable by the workers' user, and a canary
// directory they can write to.
func scriptsTree(t *testing.T) (docRoot, canaries string) {
	t.Helper()
	base, err := os.MkdirTemp("", "fv-scripts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	docRoot = filepath.Join(base, "www")
	canaries = filepath.Join(base, "canaries")
	canary := fmt.Sprintf(canaryPHP, canaries)
	files := map[string]string{
		"www/index.php":         probePHP,
		"www/blog/index.php":    probePHP,
		"www/sub/y.php":         probePHP,
		"www/dir.php/index.php": probePHP, // under a directory named *.php
		"www/upload.txt":        canary,   // an upload holding PHP code
		"www/fc/upload.txt":     canary,   // reachable as the front controller's PATH_INFO
		"www/.hidden.php":       canary,
		"www/x.PHP":             canary,
		"www/x.php.txt":         canary,
		"outside/evil.php":      canary,
	}
	for name, body := range files {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(canaries, 0o777); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"www/out.php":  "../outside/evil.php", // a script that leads outside
		"www/outdir":   "../outside",          // a directory that does
		"www/link.php": "index.php",           // stays inside: runs index.php
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	// php-cgi would block on opening a FIFO until request_timeout.
	if err := syscall.Mkfifo(filepath.Join(docRoot, "fifo.php"), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{base, canaries} {
		if err := os.Chmod(d, 0o777); err != nil { // MkdirTemp made base 0700; umask trimmed canaries
			t.Fatal(err)
		}
	}
	return docRoot, canaries
}

// scriptsRoutes: a front controller under /fc/, PHP by suffix everywhere,
// and php-cgi started with cgi.fix_pathinfo=fix as user nobody (as root;
// as another user, fcgivisor's own). The Go pool's /go/ route comes after
// them: the next route for /go/missing.php.
func scriptsRoutes(fix int) string {
	return fmt.Sprintf(`[[http.route]]
prefix = "/fc/"
script = "/index.php"
pool = "php"

[[http.route]]
prefix = "/"
suffix = ".php"
index = "index.php"
pool = "php"

[pool.php]
command = %s
env = { PHP_FCGI_MAX_REQUESTS = "0" }
request_timeout = "5s"
user = "nobody"
`, tomlStrings([]string{phpCGI, "-d", fmt.Sprintf("cgi.fix_pathinfo=%d", fix)}))
}

// TestPoolRouteScripts runs the cases of the "only real scripts run" rule
// against real php-cgi, with cgi.fix_pathinfo=1 and 0.
func TestPoolRouteScripts(t *testing.T) {
	lang{"php"}.need(t)
	t.Parallel()
	for _, fix := range []int{1, 0} {
		t.Run(fmt.Sprintf("fix_pathinfo=%d", fix), func(t *testing.T) {
			t.Parallel()
			docRoot, canaries := scriptsTree(t)
			in := start(t, options{langs: []string{"go"}, docRoot: docRoot, routes: scriptsRoutes(fix),
				pool: func(_ lang, p *poolOpts) { p.user = "nobody" }})
			t.Run("runs", func(t *testing.T) { testScriptsRun(t, in, docRoot, fix) })
			t.Run("refused", func(t *testing.T) { testScriptsRefused(t, in) })
			ents, err := os.ReadDir(canaries)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("a file that is not a script ran: canary %s", e.Name())
			}
		})
	}
}

// testScriptsRun: existing scripts run, with the PATH_INFO of the URL
// and not a file it names.
func testScriptsRun(t *testing.T, in *instance, docRoot string, fix int) {
	for _, tc := range []struct {
		path, file, scriptName, pathInfo string
	}{
		{"/index.php", "index.php", "/index.php", ""},
		{"/index.php/foo/bar", "index.php", "/index.php", "/foo/bar"},
		// With PATH_TRANSLATED = document_root + PATH_INFO, php-cgi with
		// fix_pathinfo=0 ran upload.txt here.
		{"/index.php/upload.txt", "index.php", "/index.php", "/upload.txt"},
		{"/", "index.php", "/index.php", ""},
		{"/blog/", "blog/index.php", "/blog/index.php", ""},
		{"/sub/y.php/a/b.php", "sub/y.php", "/sub/y.php", "/a/b.php"},
		{"/link.php/p", "index.php", "/link.php", "/p"}, // a symlink inside is followed
		// The front controller: one script, every path as PATH_INFO.
		{"/fc/users/7", "index.php", "/index.php", "/fc/users/7"},
		{"/fc/upload.txt", "index.php", "/index.php", "/fc/upload.txt"},
	} {
		resp, b := in.get(t, tc.path)
		body := string(b)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %q, want 200", tc.path, resp.StatusCode, clip(b))
			continue
		}
		for k, v := range map[string]string{
			"file":            filepath.Join(docRoot, tc.file),
			"fix_pathinfo":    fmt.Sprint(fix),
			"SCRIPT_NAME":     tc.scriptName,
			"SCRIPT_FILENAME": docRoot + tc.scriptName,
			"PATH_INFO":       tc.pathInfo,
			"PATH_TRANSLATED": "(unset)",
		} {
			if !strings.Contains(body, "\n"+k+"="+v+"\n") && !strings.HasPrefix(body, k+"="+v+"\n") {
				t.Errorf("GET %s: want %s=%s in\n%s", tc.path, k, v, body)
			}
		}
	}
	// Not a script here: the next matching route answers.
	if resp, body := in.get(t, "/go/missing.php"); resp.StatusCode != http.StatusOK || string(body) != "hello from go\n" {
		t.Errorf("GET /go/missing.php: %d %q, want the next route's 200 %q", resp.StatusCode, clip(body), "hello from go\n")
	}
}

// testScriptsRefused: no path that names no script under the document
// root reaches php-cgi; each is fcgivisor's own 404 (no other route
// matches them), not php-cgi's "No input file specified.".
func testScriptsRefused(t *testing.T, in *instance) {
	for _, p := range []string{
		"/upload.txt/foo.php", // php-cgi's fix_pathinfo=1 walk ran upload.txt
		"/upload.txt/foo.php/bar",
		"/missing.php",
		"/missing.php/upload.txt", // a file named only in PATH_INFO
		"/missing.php/index.php",
		"/sub/", // no sub/index.php
		"/dir.php",
		"/dir.php/", // a directory, though dir.php/index.php exists
		"/dir.php/index.php",
		"/fifo.php",
		"/out.php",
		"/outdir/evil.php",
		"/../outside/evil.php",
		"/%2e%2e/outside/evil.php",
		"/sub/%2E%2E/%2e%2e/outside/evil.php",
		"/index.php%00.txt",
		"//index.php",
		"/./index.php",
		"/.hidden.php",
		"/x.PHP",
		"/x.php.txt",
	} {
		resp, body := in.get(t, p)
		if resp.StatusCode != http.StatusNotFound || string(body) != "Not Found\n" {
			t.Errorf("GET %s: %d %q, want 404 from fcgivisor", p, resp.StatusCode, clip(body))
		}
	}
}
