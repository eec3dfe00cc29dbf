package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A static route in front of a php-cgi front controller: a file on disk is
// served from disk; a missing path falls through to index.php with the
// whole path as PATH_INFO (nginx's try_files $uri /index.php).
func TestStaticRouteBeforeFrontController(t *testing.T) {
	php := lang{"php"}
	php.need(t)
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("from disk\n"), 0o644)
	in := start(t, options{langs: []string{"php"}, routes: `[[http.route]]
prefix = "/php/"
static = ` + tomlString(dir) + `
user = "root"
`})
	resp, body, err := in.do(context.Background(), http.MethodGet, "/php/hello.txt", nil, nil)
	if err != nil || resp.StatusCode != 200 || string(body) != "from disk\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("static file: %v %v %q", err, resp, body)
	}
	resp, body, err = in.do(context.Background(), http.MethodGet, "/php/users/7?vars", nil, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("front controller: %v %v %q", err, resp, body)
	}
	for _, want := range []string{"SCRIPT_NAME=/index.php", "PATH_INFO=/php/users/7"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Fatalf("front controller vars lack %s:\n%s", want, body)
		}
	}
}

// docRoot makes a document root of files (name → content; mode 0644,
// directories 0755) that another user can reach: the php-cgi workers and
// a static route's user read it.
func docRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// asWWWData runs the php pool as www-data when the test runs as root (as
// root fcgivisor ignores nothing; otherwise user is ignored with a
// warning).
func asWWWData(_ lang, p *poolOpts) { p.user = "www-data" }

// notServed GETs path and fails t unless the answer is the front's own
// 404 (what a path no route serves gets), without any of leaks in it.
func (in *instance) notServed(t *testing.T, path string, leaks ...string) {
	t.Helper()
	resp, body := in.get(t, path)
	if resp.StatusCode != http.StatusNotFound || string(body) != "Not Found\n" {
		t.Errorf("GET %s: %d %q, want the 404 of a path no route serves", path, resp.StatusCode, clip(body))
	}
	for _, l := range leaks {
		if strings.Contains(string(body), l) {
			t.Errorf("GET %s leaks %q: %q", path, l, clip(body))
		}
	}
}

// Issue 10, row 3: a static route on the document root before the .php
// pool route never sends PHP source; the pool runs the script, whatever
// the spelling of the path, the index of a directory included.
func TestStaticRouteNeverServesPHPSource(t *testing.T) {
	lang{"php"}.need(t)
	t.Parallel()
	root := docRoot(t, map[string]string{
		"index.php":     `<?php echo "ran ", basename(__FILE__), "\n";`,
		"sub/index.php": `<?php echo "ran sub/", basename(__FILE__), "\n";`,
		"style.css":     "body{}",
	})
	in := start(t, options{langs: []string{"php"}, docRoot: root, pool: asWWWData, routes: `[[http.route]]
static = ` + tomlString(root) + `
index  = "index.php"
user   = "www-data"

[[http.route]]
suffix = ".php"
index  = "index.php"
pool   = "php"
`})
	for path, want := range map[string]string{
		"/index.php": "ran index.php\n", "/": "ran index.php\n", "/index%2ephp": "ran index.php\n",
		"/index.php/": "ran index.php\n", "/sub/": "ran sub/index.php\n", "/sub/index.php": "ran sub/index.php\n",
	} {
		in.expect(t, path, http.StatusOK, want)
	}
	// No pool route runs "/INDEX.PHP" (suffixes are case-sensitive), and
	// the static route does not serve it either: on a case-insensitive
	// file system it would be index.php's source.
	in.notServed(t, "/INDEX.PHP", "<?php")
	resp, body := in.get(t, "/style.css")
	if resp.StatusCode != 200 || string(body) != "body{}" {
		t.Fatalf("GET /style.css: %d %q", resp.StatusCode, body)
	}
}

// Issue 10, row 4: as root, a static route serves files with the rights
// of its user: a root-owned 0600 file in the document root, a file in a
// directory the user cannot search and a symlink to the secret are 404,
// like missing files; a group-readable file is served when the user is in
// the group. Not as root, user is ignored with a warning and fcgivisor's
// own rights apply: a file it cannot open is 404.
func TestStaticRouteServesWithUserRights(t *testing.T) {
	t.Parallel()
	root := docRoot(t, map[string]string{
		"public.txt": "public", "secret.txt": "SECRET", "closed/file.txt": "CLOSED", "group.txt": "GROUP",
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(root, "secret.txt"), 0o600))
	must(os.Symlink("secret.txt", filepath.Join(root, "link.txt")))
	asRoot := os.Geteuid() == 0
	// A directory closed to the user: root's own 0700 one, or, not as
	// root, one closed to fcgivisor itself.
	closed := filepath.Join(root, "closed")
	if asRoot {
		must(os.Chmod(closed, 0o700))
	} else {
		must(os.Chmod(closed, 0o000))
		t.Cleanup(func() { os.Chmod(closed, 0o755) }) // for the removal
	}
	if asRoot {
		www, err := user.Lookup("www-data")
		if err != nil {
			t.Fatal("user www-data: ", err)
		}
		gid, _ := strconv.Atoi(www.Gid)
		must(os.Chown(filepath.Join(root, "group.txt"), 0, gid))
		must(os.Chmod(filepath.Join(root, "group.txt"), 0o640))
	} else {
		must(os.Chmod(filepath.Join(root, "group.txt"), 0o000))
	}
	in := start(t, options{langs: []string{}, docRoot: root, routes: `[[http.route]]
static = ` + tomlString(root) + `
user   = "www-data"
`})
	in.expect(t, "/public.txt", http.StatusOK, "public")
	in.notServed(t, "/missing.txt")
	in.notServed(t, "/closed/file.txt", "CLOSED")
	if asRoot {
		in.notServed(t, "/secret.txt", "SECRET")
		in.notServed(t, "/link.txt", "SECRET")
		in.expect(t, "/group.txt", http.StatusOK, "GROUP")
		return
	}
	// Not root: the user is ignored; what fcgivisor's own user may read
	// is served (its 0600 file), what it may not is 404.
	in.waitLog(t, "the warning that user is ignored", func(r map[string]any) bool {
		return strings.Contains(fmt.Sprint(r["msg"]), "user and group are ignored") && r["key"] == "http.route[0]"
	})
	in.expect(t, "/secret.txt", http.StatusOK, "SECRET")
	in.notServed(t, "/group.txt", "GROUP")
}

// As root, a static route that does not name its user is refused by
// check and run, with the key and the fix; as another user, the file is
// fine.
func TestStaticRouteWithoutUser(t *testing.T) {
	t.Parallel()
	o := options{langs: []string{}, routes: "[[http.route]]\nstatic = " + tomlString(t.TempDir()) + "\n"}
	path := filepath.Join(t.TempDir(), "f.toml")
	if err := os.WriteFile(path, []byte(renderConfig(&o, shortTempDir(t), freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, nil, "", "check", "-c", path)
	if os.Geteuid() != 0 {
		if code != 0 {
			t.Fatalf("check of a static route without user, not as root: exit %d, want 0\n%s", code, out)
		}
		return
	}
	for _, args := range [][]string{{"check", "-c", path}, {"run", "-c", path}} {
		code, out := runCLI(t, nil, "", args...)
		if code != 1 || !strings.Contains(out, "http.route[0].user: fcgivisor runs as root and refuses to serve files with root's rights") || !strings.Contains(out, `user = "root"`) {
			t.Fatalf("fcgivisor %s: exit %d, want 1 with the key and the fix:\n%s", args[0], code, out)
		}
	}
}

// deny on a static route and status routes: a denied or closed path is
// 404 (or the route's status) however it is spelled, and no later route
// serves it: neither a second static route on the same directory nor the
// .php pool route.
func TestStaticDenyAndStatusRoutes(t *testing.T) {
	lang{"php"}.need(t)
	t.Parallel()
	root := docRoot(t, map[string]string{
		"data/db.sqlite": "DB", "data/index.html": "DB", "data/x.php": `<?php echo "DATA RAN";`,
		"conf/app.ini": "INI", "config.ini": "INI", "public/app.css": "css", "database.txt": "not data",
		"old/a.txt": "OLD", "old/b.php": `<?php echo "OLD RAN";`, "keep.bak": "BAK",
	})
	in := start(t, options{langs: []string{"php"}, docRoot: root, pool: asWWWData, routes: `[[http.route]]
prefix = "/old/"
status = 410

[[http.route]]
suffix = ".bak"
status = 403

[[http.route]]
static = ` + tomlString(root) + `
index  = "index.html"
deny   = ["/data/", "*.ini"]
user   = "www-data"

[[http.route]]
static = ` + tomlString(root) + `
index  = "index.html"
user   = "www-data"

[[http.route]]
suffix = ".php"
pool   = "php"
`})
	for _, p := range []string{
		"/data/db.sqlite", "/data/", "/data", "//data/db.sqlite", "/./data/db.sqlite", "/%64ata/db.sqlite",
		"/data%2fdb.sqlite", "/DATA/db.sqlite", "/data/x.php", "/conf/app.ini", "/config.ini",
	} {
		in.notServed(t, p, "DB", "DATA RAN", "INI")
	}
	for _, p := range []string{"/old/a.txt", "/old/b.php", "/OLD/a.txt", "//old/b.php", "/old"} {
		resp, body := in.get(t, p)
		if resp.StatusCode != http.StatusGone || string(body) != "Gone\n" {
			t.Errorf("GET %s: %d %q, want 410 Gone", p, resp.StatusCode, clip(body))
		}
	}
	if resp, body := in.get(t, "/keep.bak"); resp.StatusCode != http.StatusForbidden || string(body) != "Forbidden\n" {
		t.Errorf("GET /keep.bak: %d %q, want 403", resp.StatusCode, clip(body))
	}
	in.expect(t, "/public/app.css", http.StatusOK, "css")
	in.expect(t, "/database.txt", http.StatusOK, "not data")
}

// The PHP application layout of docs/configuration.md: a private
// directory closed by a status route, the document root served by a
// static route (with the user's rights and a deny list), existing .php
// files run by the pool, everything else by the front controller. Nothing
// under /data/ is served or run; no source goes out.
func TestPHPAppLayout(t *testing.T) {
	lang{"php"}.need(t)
	t.Parallel()
	root := docRoot(t, map[string]string{
		"index.php":       `<?php echo "front PATH_INFO=", $_SERVER["PATH_INFO"] ?? "", "\n";`,
		"hello.php":       `<?php echo "hello ran\n";`,
		"style.css":       "body{}",
		"app.ini":         "db_password=INI",
		".env":            "SECRET=ENV",
		"data/secret.txt": "DATA",
		"data/x.php":      `<?php echo "DATA RAN\n";`,
	})
	in := start(t, options{langs: []string{"php"}, docRoot: root, pool: asWWWData, routes: `[[http.route]]
prefix = "/data/"
status = 404

[[http.route]]
static = ` + tomlString(root) + `
deny   = ["*.ini"]
user   = "www-data"

[[http.route]]
suffix = ".php"
index  = "index.php"
pool   = "php"

[[http.route]]
script = "/index.php"
pool   = "php"
`})
	in.expect(t, "/style.css", http.StatusOK, "body{}")
	in.expect(t, "/hello.php", http.StatusOK, "hello ran\n")
	in.expect(t, "/index.php", http.StatusOK, "front PATH_INFO=\n")
	in.expect(t, "/", http.StatusOK, "front PATH_INFO=\n")
	in.expect(t, "/users/7", http.StatusOK, "front PATH_INFO=/users/7\n")
	// A dotfile is no file to the static route: the front controller
	// gets the path, not the file.
	in.expect(t, "/.env", http.StatusOK, "front PATH_INFO=/.env\n")
	for _, p := range []string{"/data/secret.txt", "/data/x.php", "/Data/x.php", "//data/x.php", "/data", "/data/", "/data/missing", "/app.ini"} {
		in.notServed(t, p, "DATA", "INI", "<?php")
	}
}
